# Every setting of the stack. The function settings map onto the SQUASH_* environment
# variables the functions read (functions/README.md, squash_lambda::config::ENV_VARS).

variable "name" {
  description = "Prefix of every resource name: functions are NAME-coordinator and NAME-worker-0..W-1."
  type        = string
  default     = "squash"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.name))
    error_message = "name: 1-40 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "region" {
  description = "AWS region of the stack."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "Index bucket name; empty means NAME-indexes-ACCOUNT_ID."
  type        = string
  default     = ""
}

variable "index_prefix" {
  description = "Key prefix under which indexes live: s3://BUCKET/PREFIX/INDEX/manifest.sqm."
  type        = string
  default     = "indexes"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.index_prefix))
    error_message = "index_prefix: one or more path segments without leading or trailing '/'."
  }
}

variable "bucket_versioning" {
  description = "Keep old object versions (noncurrent versions expire after noncurrent_days)."
  type        = bool
  default     = true
}

variable "noncurrent_days" {
  description = "Days a replaced or deleted object version is kept when versioning is on."
  type        = number
  default     = 30
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the bucket; empty means the AWS-managed aws/s3 key (no key fee)."
  type        = string
  default     = ""
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds indexes."
  type        = bool
  default     = false
}

variable "coordinator_zip" {
  description = "Path of the coordinator's bootstrap.zip; empty means target/lambda/squash-coordinator/bootstrap.zip."
  type        = string
  default     = ""
}

variable "worker_zip" {
  description = "Path of the worker's bootstrap.zip; empty means target/lambda/squash-worker/bootstrap.zip."
  type        = string
  default     = ""
}

variable "coordinator_memory_mb" {
  description = "Coordinator memory (MB); 60 % less 64 MiB of it is the segment cache for the queries it searches itself (worker_count = 0, or a local plan). 2048 holds a 1M x 128 index."
  type        = number
  default     = 2048
}

variable "worker_memory_mb" {
  description = "Worker memory (MB): 60 % less 64 MiB of it becomes the warm segment cache."
  type        = number
  default     = 2048
}

variable "timeout_s" {
  description = "Function timeout in seconds (the HTTP API itself gives up after 30 s). One worker invoke may take 30 % of it, so a timed-out child is retried before the worker's own timeout."
  type        = number
  default     = 30

  validation {
    condition     = var.timeout_s >= 3 && var.timeout_s <= 900
    error_message = "timeout_s must be between 3 and 900."
  }
}

variable "worker_count" {
  description = "W: worker functions, each owning a fixed share of partitions (SQUASH_WORKERS); 0 = the coordinator searches by itself."
  type        = number
  default     = 4

  validation {
    condition     = var.worker_count >= 0 && var.worker_count <= 256 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count must be a whole number between 0 and 256."
  }
}

variable "branching" {
  description = "b: children per node of the fan-out tree (SQUASH_BRANCHING)."
  type        = number
  default     = 4

  validation {
    condition     = var.branching >= 1 && floor(var.branching) == var.branching
    error_message = "branching must be a whole number of at least 1."
  }
}

variable "depth" {
  description = "l: worker levels of the fan-out tree (SQUASH_DEPTH); above 1, workers invoke workers."
  type        = number
  default     = 3

  validation {
    condition     = var.depth >= 1 && var.depth <= 8 && floor(var.depth) == var.depth
    error_message = "depth must be a whole number between 1 and 8."
  }
}

variable "invoke_attempts" {
  description = "Attempts per worker invoke on throttling, 5xx or timeouts (SQUASH_INVOKE_ATTEMPTS)."
  type        = number
  default     = 3
}

variable "writes" {
  description = "Serve the upsert and delete routes (SQUASH_WRITES) and let the coordinator write objects under the index prefix (s3:PutObject). Off: the deployment is read-only."
  type        = bool
  default     = false
}

variable "manifest_ttl_s" {
  description = "Seconds a coordinator reuses its copy of an index manifest (SQUASH_MANIFEST_TTL): a write shows in searches within this time."
  type        = number
  default     = 1
}

variable "tmp_cache_mb" {
  description = "Second cache tier in the workers' /tmp, MB (SQUASH_TMP_CACHE_BYTES); 0 = off."
  type        = number
  default     = 0
}

variable "ephemeral_storage_mb" {
  description = "Workers' /tmp size, MB (512-10240); raise it with tmp_cache_mb."
  type        = number
  default     = 512
}

variable "coordinator_reserved_concurrency" {
  description = "Reserved concurrency of the coordinator; null = unreserved (new accounts cannot reserve)."
  type        = number
  default     = null
}

variable "worker_reserved_concurrency" {
  description = "Reserved concurrency of each worker; null = unreserved."
  type        = number
  default     = null
}

variable "tracing_mode" {
  description = "X-Ray tracing of the functions: PassThrough (no traces of their own) or Active."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.tracing_mode)
    error_message = "tracing_mode must be PassThrough or Active."
  }
}

variable "log_level" {
  description = "Lambda log level of the functions' own lines and of Lambda's platform lines (JSON format): WARN (the default) logs failed requests only, and no START/END/REPORT lines, so a successful invocation writes no log bytes ($0.50 per GB ingested); INFO logs one line per request (about 130 bytes) plus Lambda's (about 330 bytes); DEBUG adds Lambda's own debug lines."
  type        = string
  default     = "WARN"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN"], var.log_level)
    error_message = "log_level must be DEBUG, INFO or WARN."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' and the API's log groups."
  type        = number
  default     = 365
}

variable "endpoints" {
  description = "How callers reach the coordinator: both, http_api (API Gateway HTTP API) or function_url (a Lambda function URL with AWS_IAM auth: no API Gateway fee)."
  type        = string
  default     = "both"

  validation {
    condition     = contains(["both", "http_api", "function_url"], var.endpoints)
    error_message = "endpoints must be both, http_api or function_url."
  }
}

variable "authorization" {
  description = "Who may call the HTTP API: AWS_IAM (SigV4-signed requests, the default) or JWT. The function URL always takes AWS_IAM."
  type        = string
  default     = "AWS_IAM"

  validation {
    condition     = contains(["AWS_IAM", "JWT"], var.authorization)
    error_message = "authorization must be AWS_IAM or JWT (an open API is not offered)."
  }
}

variable "jwt_issuer" {
  description = "JWT issuer URL (authorization = JWT), e.g. https://cognito-idp.REGION.amazonaws.com/POOL_ID."
  type        = string
  default     = ""
}

variable "jwt_audience" {
  description = "Accepted JWT audiences (authorization = JWT)."
  type        = list(string)
  default     = []
}

variable "throttle_rate" {
  description = "Steady requests per second the API accepts before answering 429."
  type        = number
  default     = 100
}

variable "throttle_burst" {
  description = "Burst of requests the API accepts before answering 429."
  type        = number
  default     = 200
}
