output "endpoint" {
  description = "Base URL of the HTTP API: POST ENDPOINT/v1/indexes/INDEX/search (SigV4 service execute-api, or JWT); null when endpoints = function_url."
  value       = one(aws_apigatewayv2_api.http[*].api_endpoint)
}

output "function_url" {
  description = "Base URL of the coordinator's function URL: POST URLv1/indexes/INDEX/search (SigV4 service lambda); null when endpoints = http_api."
  value       = one(aws_lambda_function_url.coordinator[*].function_url)
}

output "bucket" {
  description = "The index bucket."
  value       = aws_s3_bucket.indexes.bucket
}

output "index_root" {
  description = "Where to build indexes: squash build --out INDEX_ROOT/NAME ..."
  value       = local.index_root
}

output "coordinator_function" {
  description = "Name of the coordinator function (raw invokes: {\"index\": ..., \"search\": {...}})."
  value       = aws_lambda_function.coordinator.function_name
}

output "worker_functions" {
  description = "Names of the worker functions, 0..W-1."
  value       = aws_lambda_function.worker[*].function_name
}

output "authorization" {
  description = "How callers authenticate to the HTTP API: AWS_IAM (SigV4, service execute-api) or JWT. The function URL takes AWS_IAM (service lambda)."
  value       = var.authorization
}
