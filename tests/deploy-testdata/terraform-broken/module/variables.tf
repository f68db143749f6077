# A module with one required and one optional variable.
variable "required_one" {
  type = string
}

variable "optional_one" {
  type    = string
  default = null
}
