# How callers reach the coordinator (var.endpoints): the HTTP API, the coordinator's routes
# each behind IAM (SigV4) or JWT authorization, throttled, with JSON access logs; and/or a
# Lambda function URL with AWS_IAM auth, the same routes without API Gateway's per-request
# fee. The routes are the ones squash_lambda::operation::ROUTES serves; `make infra-check`
# fails when they drift apart.

locals {
  routes = [
    "POST /v1/indexes/{index}/search",
    "POST /v1/indexes/{index}/search/batch",
    "POST /v1/indexes/{index}/upsert",
    "POST /v1/indexes/{index}/delete",
    "GET /v1/indexes/{index}",
  ]
  http_api     = var.endpoints != "function_url"
  function_url = var.endpoints != "http_api"
}

resource "aws_lambda_function_url" "coordinator" {
  count              = local.function_url ? 1 : 0
  function_name      = aws_lambda_function.coordinator.function_name
  authorization_type = "AWS_IAM"
}

resource "aws_apigatewayv2_api" "http" {
  count         = local.http_api ? 1 : 0
  name          = "${var.name}-api"
  description   = "squash search API"
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_integration" "coordinator" {
  count                  = local.http_api ? 1 : 0
  api_id                 = aws_apigatewayv2_api.http[0].id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.coordinator.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = min(30000, var.timeout_s * 1000)
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  count            = var.authorization == "JWT" && local.http_api ? 1 : 0
  api_id           = aws_apigatewayv2_api.http[0].id
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
  for_each           = local.http_api ? toset(local.routes) : toset([])
  api_id             = aws_apigatewayv2_api.http[0].id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.coordinator[0].id}"
  authorization_type = var.authorization
  authorizer_id      = var.authorization == "JWT" ? aws_apigatewayv2_authorizer.jwt[0].id : null
}

resource "aws_cloudwatch_log_group" "api" {
  count             = local.http_api ? 1 : 0
  # checkov:skip=CKV_AWS_158: access logs hold request ids, routes, status and latency, never bodies or tokens; KMS would add a key cost
  name              = "/aws/apigateway/${var.name}-api"
  retention_in_days = var.log_retention_days
}

resource "aws_apigatewayv2_stage" "default" {
  count       = local.http_api ? 1 : 0
  api_id      = aws_apigatewayv2_api.http[0].id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.throttle_burst
    throttling_rate_limit  = var.throttle_rate
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api[0].arn
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
  count         = local.http_api ? 1 : 0
  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.coordinator.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http[0].execution_arn}/*/*"
}
