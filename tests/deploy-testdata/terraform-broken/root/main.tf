# expect: passes misspelt_one, which ../module does not declare
# expect: does not pass required_one, which ../module requires
# expect: is not a module of this tree
module "broken" {
  source = "../module"

  optional_one = "set"
  misspelt_one = "typo"
}

module "remote" {
  source = "registry.example/some/module"
}

module "fine" {
  source = "../module"

  required_one = "set"
}
