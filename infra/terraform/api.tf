# The HTTP API: the coordinator's two routes, each behind IAM (SigV4) or JWT authorization,
# throttled, with JSON access logs. The routes are the ones squash_lambda::service::ROUTES
# serves; `make infra-check` fails when they drift apart.

locals {
  routes = ["POST /v1/indexes/{index}/search", "GET /v1/indexes/{index}"]
}

resource "aws_apigatewayv2_api" "http" {
  name          = "${var.name}-api"
  description   = "squash search API"
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_integration" "coordinator" {
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.coordinator.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = min(30000, var.timeout_s * 1000)
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  count            = var.authorization == "JWT" ? 1 : 0
  api_id           = aws_apigatewayv2_api.http.id
  name             = "${var.name}-jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = var.jwt_audience
  }

  lifecycle {
    precondition {
      condition     = var.jwt_issuer != "" && length(var.jwt_audience) > 0
      error_message = "authorization = JWT needs jwt_issuer and at least one jwt_audience."
    }
  }
}

resource "aws_apigatewayv2_route" "coordinator" {
  for_each           = toset(local.routes)
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.coordinator.id}"
  authorization_type = var.authorization
  authorizer_id      = var.authorization == "JWT" ? aws_apigatewayv2_authorizer.jwt[0].id : null
}

resource "aws_cloudwatch_log_group" "api" {
  # checkov:skip=CKV_AWS_158: access logs hold request ids, routes, status and latency, never bodies or tokens; KMS would add a key cost
  name              = "/aws/apigateway/${var.name}-api"
  retention_in_days = var.log_retention_days
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.throttle_burst
    throttling_rate_limit  = var.throttle_rate
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      caller             = "$context.identity.caller"
      responseLength     = "$context.responseLength"
      integrationLatency = "$context.integrationLatency"
      integrationError   = "$context.integrationErrorMessage"
      requestTime        = "$context.requestTime"
    })
  }
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.coordinator.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*"
}
