# A regional fleet: the writers and etcd in one home region, edges there and in a second
# region. The second region's edges replicate from the home region's load balancer over the
# peered networks (open UDP 8000 from their addresses: the writers' security group admits the
# home region's edges only). Writes always go to the home region; reads stay in each region.

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
  region = var.home.region
}

provider "aws" {
  alias  = "second"
  region = var.second.region
}

variable "home" {
  description = "The home region: writers, etcd, edges."
  type = object({
    region           = string
    vpc_id           = string
    subnet_ids       = list(string)
    etcd_private_ips = list(string)
    ami_id           = string
  })
}

variable "second" {
  description = "The second region: edges only, in a VPC peered with the home region's."
  type = object({
    region     = string
    vpc_id     = string
    subnet_ids = list(string)
    ami_id     = string
  })
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

module "home" {
  source = "../../modules/aws"

  name             = "setpoint-home"
  vpc_id           = var.home.vpc_id
  subnet_ids       = var.home.subnet_ids
  etcd_private_ips = var.home.etcd_private_ips
  ami_id           = var.home.ami_id
  client_cidrs     = ["10.0.0.0/8"]
  package_url      = var.package_url
  package_sha256   = var.package_sha256
  ca_pem           = file("${var.certs_dir}/ca.pem")
  writer_cert_pem  = file("${var.certs_dir}/writer.pem")
  writer_key_pem   = file("${var.certs_dir}/writer.key")
  edge_cert_pem    = file("${var.certs_dir}/edge.pem")
  edge_key_pem     = file("${var.certs_dir}/edge.key")
  admin_key        = var.admin_key
  region_label     = var.home.region
}

module "second_region_edges" {
  source = "../../modules/aws-edges"
  providers = {
    aws = aws.second
  }

  name             = "setpoint-second"
  vpc_id           = var.second.vpc_id
  subnet_ids       = var.second.subnet_ids
  ami_id           = var.second.ami_id
  package_url      = var.package_url
  package_sha256   = var.package_sha256
  writers          = [module.home.writer_replication_endpoint]
  writer_tls_name  = "setpoint-writer"
  ca_pem           = file("${var.certs_dir}/ca.pem")
  edge_cert_pem    = file("${var.certs_dir}/edge.pem")
  edge_key_pem     = file("${var.certs_dir}/edge.key")
  region_label     = var.second.region
  desired_capacity = 3
}

output "writer_url" {
  description = "export SETPOINT_URL=… for the CLI."
  value       = module.home.writer_url
}

output "edges" {
  description = "The edges running now, by region."
  value = {
    (var.home.region)   = module.home.edge_private_ips
    (var.second.region) = module.second_region_edges.private_ips
  }
}
