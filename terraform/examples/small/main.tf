# A small fleet in one region: three etcd members, two writers behind a load balancer, and an
# Auto Scaling group of two to six edges. Certificates come from files (`setpoint certs --out
# certs --hostname setpoint-writer` makes a dev set; use your PKI's in production).

terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

provider "aws" {
  region = var.aws_region
}

variable "aws_region" {
  description = "The AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "An existing VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Two or three private subnets in different availability zones."
  type        = list(string)
}

variable "etcd_private_ips" {
  description = "Three free addresses, one in each of the first three subnets."
  type        = list(string)
}

variable "ami_id" {
  description = "A Debian 12 AMI."
  type        = string
}

variable "package_url" {
  description = "HTTPS URL of the setpoint .deb."
  type        = string
}

variable "package_sha256" {
  description = "SHA-256 of that .deb."
  type        = string
}

variable "certs_dir" {
  description = "Directory with ca.pem, writer.pem, writer.key, edge.pem, edge.key."
  type        = string
  default     = "certs"
}

variable "admin_key" {
  description = "The first admin's API key (spk_…)."
  type        = string
  sensitive   = true
}

module "setpoint" {
  source = "../../modules/aws"

  name             = "setpoint"
  vpc_id           = var.vpc_id
  subnet_ids       = var.subnet_ids
  etcd_private_ips = var.etcd_private_ips
  ami_id           = var.ami_id
  client_cidrs     = ["10.0.0.0/8"]
  package_url      = var.package_url
  package_sha256   = var.package_sha256
  ca_pem           = file("${var.certs_dir}/ca.pem")
  writer_cert_pem  = file("${var.certs_dir}/writer.pem")
  writer_key_pem   = file("${var.certs_dir}/writer.key")
  edge_cert_pem    = file("${var.certs_dir}/edge.pem")
  edge_key_pem     = file("${var.certs_dir}/edge.key")
  admin_key        = var.admin_key

  edges = {
    min_size         = 2
    max_size         = 6
    desired_capacity = 2
  }
}

output "writer_url" {
  description = "export SETPOINT_URL=… for the CLI."
  value       = module.setpoint.writer_url
}

output "edge_private_ips" {
  description = "The edges running now."
  value       = module.setpoint.edge_private_ips
}
