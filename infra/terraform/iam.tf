# Least privilege. Workers read the index prefix and, when the tree has inner nodes
# (depth > 1), invoke the worker functions; the coordinator reads the index prefix (it
# searches by itself when worker_count = 0 or a query's plan is local), lists the bucket
# so a missing index is a 404 rather than a 403, and invokes exactly the worker functions.
# Each writes only its own log group. With worker_count = 0 there is no worker role at all
# (a policy statement without resources is a MalformedPolicyDocument). Only with
# `writes = true` may the coordinator put objects under the index prefix (and encrypt them
# with a customer-managed key); workers never write.

locals {
  index_objects = "${aws_s3_bucket.indexes.arn}/${var.index_prefix}/*"
  worker_arns   = [for n in local.worker_names : "arn:${data.aws_partition.current.partition}:lambda:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:function:${n}"]
  inner_workers = var.depth > 1 && var.worker_count > var.branching
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "coordinator" {
  name               = "${local.coordinator_name}-role"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

resource "aws_iam_role" "worker" {
  count              = var.worker_count > 0 ? 1 : 0
  name               = "${var.name}-worker-role"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

# Shared by both roles, each only when it applies: invoking the worker functions (the
# coordinator when W > 0, workers when the tree has inner nodes) and decrypting with a
# customer-managed key (when kms_key_arn is set).
data "aws_iam_policy_document" "invoke_workers" {
  count = var.worker_count > 0 ? 1 : 0

  statement {
    sid       = "InvokeWorkers"
    actions   = ["lambda:InvokeFunction"]
    resources = local.worker_arns
  }
}

data "aws_iam_policy_document" "decrypt" {
  count = var.kms_key_arn != "" ? 1 : 0

  statement {
    sid       = "DecryptIndexes"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

data "aws_iam_policy_document" "coordinator" {
  source_policy_documents = concat(data.aws_iam_policy_document.invoke_workers[*].json, data.aws_iam_policy_document.decrypt[*].json)

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.coordinator.arn}:*"]
  }

  statement {
    sid       = "ReadIndexes"
    actions   = ["s3:GetObject"]
    resources = [local.index_objects]
  }

  statement {
    sid       = "ListIndexPrefix"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.indexes.arn]
  }

  dynamic "statement" {
    for_each = var.writes ? ["on"] : []
    content {
      sid       = "WriteIndexes"
      actions   = ["s3:PutObject"]
      resources = [local.index_objects]
    }
  }

  dynamic "statement" {
    for_each = var.writes && var.kms_key_arn != "" ? ["on"] : []
    content {
      sid       = "EncryptWrites"
      actions   = ["kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

data "aws_iam_policy_document" "worker" {
  count = var.worker_count > 0 ? 1 : 0
  source_policy_documents = concat(
    local.inner_workers ? data.aws_iam_policy_document.invoke_workers[*].json : [],
    data.aws_iam_policy_document.decrypt[*].json,
  )

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.worker : "${g.arn}:*"]
  }

  statement {
    sid       = "ReadIndexes"
    actions   = ["s3:GetObject"]
    resources = [local.index_objects]
  }
}

resource "aws_iam_role_policy" "coordinator" {
  name   = "squash-coordinator"
  role   = aws_iam_role.coordinator.id
  policy = data.aws_iam_policy_document.coordinator.json
}

resource "aws_iam_role_policy" "worker" {
  count  = var.worker_count > 0 ? 1 : 0
  name   = "squash-worker"
  role   = aws_iam_role.worker[0].id
  policy = data.aws_iam_policy_document.worker[0].json
}

resource "aws_iam_role_policy_attachment" "coordinator_xray" {
  count      = var.tracing_mode == "Active" ? 1 : 0
  role       = aws_iam_role.coordinator.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_iam_role_policy_attachment" "worker_xray" {
  count      = var.tracing_mode == "Active" && var.worker_count > 0 ? 1 : 0
  role       = aws_iam_role.worker[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}
