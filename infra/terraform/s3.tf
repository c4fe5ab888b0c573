# The index bucket: private (public access blocked, owner-enforced, TLS only), KMS-encrypted,
# optionally versioned. `squash build --out s3://BUCKET/PREFIX/INDEX` writes here.

locals {
  bucket     = var.bucket_name != "" ? var.bucket_name : "${var.name}-indexes-${data.aws_caller_identity.current.account_id}"
  index_root = "s3://${aws_s3_bucket.indexes.bucket}/${var.index_prefix}"
}

resource "aws_s3_bucket" "indexes" {
  # checkov:skip=CKV_AWS_18: access logs need a second bucket; use CloudTrail S3 data events for an audit trail
  # checkov:skip=CKV_AWS_144: indexes are rebuilt from their source vectors; replicate if you need another region
  # checkov:skip=CKV2_AWS_62: nothing consumes bucket events
  bucket        = local.bucket
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_public_access_block" "indexes" {
  bucket                  = aws_s3_bucket.indexes.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "indexes" {
  bucket = aws_s3_bucket.indexes.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "indexes" {
  bucket = aws_s3_bucket.indexes.id

  rule {
    apply_server_side_encryption_by_default {
      # SSE-KMS with the account's AWS-managed aws/s3 key unless kms_key_arn names one:
      # no key fee, and the bucket key keeps KMS requests (and their cost) rare.
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn != "" ? var.kms_key_arn : null
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "indexes" {
  bucket = aws_s3_bucket.indexes.id

  versioning_configuration {
    status = var.bucket_versioning ? "Enabled" : "Suspended"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "indexes" {
  bucket = aws_s3_bucket.indexes.id

  rule {
    id     = "abort-multipart-and-expire-old-versions"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.indexes]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.indexes.arn, "${aws_s3_bucket.indexes.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "indexes" {
  bucket     = aws_s3_bucket.indexes.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.indexes]
}
