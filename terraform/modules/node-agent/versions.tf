# Provider-free: this module only renders text, so it plans and tests anywhere, with no cloud
# account and no provider download.
terraform {
  required_version = ">= 1.6.0"
}
