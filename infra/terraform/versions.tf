# squash on AWS: an index bucket, the coordinator and W worker functions (one arm64
# `bootstrap` binary each, from `make build-lambda`), and an API Gateway HTTP API in front.
# See docs/DEPLOY.md.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0, < 7.0.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = "squash"
      Stack   = var.name
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}
