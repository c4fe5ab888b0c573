# The functions: one coordinator and worker_count workers, all arm64 on provided.al2023
# (the binaries need glibc 2.34), from the zips `make build-lambda` writes. The worker
# names follow the SQUASH_WORKER_FUNCTION pattern with {i} = 0..W-1.

locals {
  coordinator_name = "${var.name}-coordinator"
  worker_pattern   = "${var.name}-worker-{i}"
  worker_names     = [for i in range(var.worker_count) : replace(local.worker_pattern, "{i}", tostring(i))]
  coordinator_zip  = var.coordinator_zip != "" ? var.coordinator_zip : "${path.module}/../../target/lambda/squash-coordinator/bootstrap.zip"
  worker_zip       = var.worker_zip != "" ? var.worker_zip : "${path.module}/../../target/lambda/squash-worker/bootstrap.zip"

  # What every function reads at cold start (squash_lambda::config::ENV_VARS).
  function_env = {
    SQUASH_INDEX_ROOT        = local.index_root
    SQUASH_WORKERS           = tostring(var.worker_count)
    SQUASH_BRANCHING         = tostring(var.branching)
    SQUASH_DEPTH             = tostring(var.depth)
    SQUASH_WORKER_FUNCTION   = local.worker_pattern
    SQUASH_INVOKE_ATTEMPTS   = tostring(var.invoke_attempts)
    SQUASH_INVOKE_TIMEOUT_MS = tostring(local.invoke_timeout_ms)
    SQUASH_MANIFEST_TTL      = tostring(var.manifest_ttl_s)
    SQUASH_WRITES            = var.writes ? "on" : "off"
    SQUASH_WORKER_MEMORY_MB  = tostring(var.worker_memory_mb)
  }
  # A worker invoke may take 30 % of the function timeout: shorter than the worker's own
  # timeout, so the invoker gives up on a stuck child and retries it before the child is
  # killed, and three attempts fit in the coordinator's timeout.
  invoke_timeout_ms = floor(var.timeout_s * 300)
  worker_env = merge(local.function_env, {
    SQUASH_TMP_CACHE_BYTES = tostring(var.tmp_cache_mb * 1048576)
    SQUASH_TMP_CACHE_DIR   = "/tmp/squash-cache"
  })
}

resource "aws_cloudwatch_log_group" "coordinator" {
  # checkov:skip=CKV_AWS_158: logs hold request outcomes and timings, never vectors, filters or credentials; KMS would add a key cost
  name              = "/aws/lambda/${local.coordinator_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "worker" {
  # checkov:skip=CKV_AWS_158: logs hold request outcomes and timings, never vectors, filters or credentials; KMS would add a key cost
  count             = var.worker_count
  name              = "/aws/lambda/${local.worker_names[count.index]}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "coordinator" {
  # checkov:skip=CKV_AWS_116: invoked synchronously (API Gateway, RequestResponse); a DLQ only serves async invokes
  # checkov:skip=CKV_AWS_117: reads S3 and invokes Lambda over public AWS endpoints; a VPC would add NAT or endpoint cost and no data path
  # checkov:skip=CKV_AWS_173: the environment holds settings only (bucket, counts, names), no secrets
  # checkov:skip=CKV_AWS_272: code signing needs an AWS Signer profile; the zip's hash is pinned by source_code_hash
  # checkov:skip=CKV_AWS_115: reserved concurrency is var.coordinator_reserved_concurrency; reserving by default fails on new accounts
  function_name                  = local.coordinator_name
  description                    = "squash coordinator: HTTP API and raw invokes, plans and fans out searches"
  role                           = aws_iam_role.coordinator.arn
  filename                       = local.coordinator_zip
  source_code_hash               = filebase64sha256(local.coordinator_zip)
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = ["arm64"]
  memory_size                    = var.coordinator_memory_mb
  timeout                        = var.timeout_s
  reserved_concurrent_executions = var.coordinator_reserved_concurrency

  environment {
    variables = local.function_env
  }

  tracing_config {
    mode = var.tracing_mode
  }

  logging_config {
    log_format            = "JSON"
    application_log_level = var.log_level
    system_log_level      = var.log_level
    log_group             = aws_cloudwatch_log_group.coordinator.name
  }

  depends_on = [aws_iam_role_policy.coordinator]
}

resource "aws_lambda_function" "worker" {
  # checkov:skip=CKV_AWS_116: invoked synchronously (RequestResponse) by the coordinator or a parent worker; a DLQ only serves async invokes
  # checkov:skip=CKV_AWS_117: reads S3 and invokes Lambda over public AWS endpoints; a VPC would add NAT or endpoint cost and no data path
  # checkov:skip=CKV_AWS_173: the environment holds settings only (bucket, counts, names), no secrets
  # checkov:skip=CKV_AWS_272: code signing needs an AWS Signer profile; the zip's hash is pinned by source_code_hash
  # checkov:skip=CKV_AWS_115: reserved concurrency is var.worker_reserved_concurrency; reserving by default fails on new accounts
  count                          = var.worker_count
  function_name                  = local.worker_names[count.index]
  description                    = "squash worker ${count.index}: searches the partitions it owns, invokes its subtree"
  role                           = aws_iam_role.worker[0].arn
  filename                       = local.worker_zip
  source_code_hash               = filebase64sha256(local.worker_zip)
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = ["arm64"]
  memory_size                    = var.worker_memory_mb
  timeout                        = var.timeout_s
  reserved_concurrent_executions = var.worker_reserved_concurrency

  ephemeral_storage {
    size = var.ephemeral_storage_mb
  }

  environment {
    variables = local.worker_env
  }

  tracing_config {
    mode = var.tracing_mode
  }

  logging_config {
    log_format            = "JSON"
    application_log_level = var.log_level
    system_log_level      = var.log_level
    log_group             = aws_cloudwatch_log_group.worker[count.index].name
  }

  depends_on = [aws_iam_role_policy.worker]
}
