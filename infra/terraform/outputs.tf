output "endpoint" {
  description = "Base URL of the search API: POST ENDPOINT/v1/indexes/INDEX/search."
  value       = aws_apigatewayv2_api.http.api_endpoint
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
  description = "How callers authenticate: AWS_IAM (SigV4, service execute-api) or JWT."
  value       = var.authorization
}
