# Yandex Cloud managed Kafka, ClickHouse, PostgreSQL, Redis and Object Storage feeding the
# provider-free values module. Needs the yandex, random, http and kubernetes providers (CI only
# checks its formatting: no provider registry is reachable there).
terraform {
  required_version = ">= 1.6.0"
  required_providers {
    yandex = {
      source  = "yandex-cloud/yandex"
      version = "~> 0.130"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    http = {
      source  = "hashicorp/http"
      version = "~> 3.4"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.33"
    }
  }
}

provider "yandex" {
  folder_id = var.folder_id
  zone      = var.zone
}

provider "kubernetes" {
  config_path = var.kubeconfig_path
}
