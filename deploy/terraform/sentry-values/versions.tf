# Provider-free: this module only renders values files with templatefile(), so it runs
# (plan, test) with no provider registry at all.
terraform {
  required_version = ">= 1.6.0"
}
