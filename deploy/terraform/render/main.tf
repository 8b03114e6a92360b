# Renders the example values files under deploy/sentry/ (deploy/render.sh writes them).
# Replace the endpoints with yours, or feed the module from your infrastructure code as in
# ../examples/yandex-cloud.
terraform {
  required_version = ">= 1.6.0"
}

locals {
  common = {
    hostname    = "sentry.example.com"
    admin_email = "sre@example.com"
    postgres    = { host = "postgres.db.example.net", port = 6432 }
    redis       = { host = "redis.db.example.net", port = 6380 }
    kafka = {
      brokers = [
        { host = "kafka-1.db.example.net", port = 9091 },
        { host = "kafka-2.db.example.net", port = 9091 },
        { host = "kafka-3.db.example.net", port = 9091 },
      ]
    }
    s3 = {
      endpoint         = "https://storage.example.net"
      region           = "eu-central-1"
      filestore_bucket = "example-sentry-files"
      nodestore_bucket = "example-sentry-nodestore"
    }
  }
}

locals {
  variants = {
    # Managed ClickHouse outside the cluster, an ingress with TLS, GitHub SSO.
    managed = {
      clickhouse = { host = "clickhouse.db.example.net", cluster_name = "sentry-cluster" }
      ingress    = { cluster_issuer = "letsencrypt" }
      github     = { app_id = "123456", app_name = "example-sentry" }
    }
    # ClickHouse from deploy/clickhouse (the Altinity operator) inside the cluster.
    in_cluster_clickhouse = {
      clickhouse = { host = "clickhouse-sentry.sentry.svc.cluster.local", cluster_name = "sentry-cluster" }
      ingress    = { cluster_issuer = "letsencrypt" }
      github     = null
    }
    # A cluster without an ingress controller (minikube): a NodePort service.
    nodeport = {
      clickhouse = { host = "clickhouse.db.example.net", cluster_name = "sentry-cluster" }
      ingress    = { enabled = false }
      github     = null
    }
  }
}

module "values" {
  source   = "../sentry-values"
  for_each = local.variants

  hostname    = local.common.hostname
  admin_email = local.common.admin_email
  postgres    = local.common.postgres
  redis       = local.common.redis
  kafka       = local.common.kafka
  s3          = local.common.s3
  clickhouse  = each.value.clickhouse
  ingress     = each.value.ingress
  github      = each.value.github
  agent       = { cluster_name = "production-eu" }
}

output "values" {
  value = module.values["managed"].sentry_values
}

output "values_clickhouse_operator" {
  value = module.values["in_cluster_clickhouse"].sentry_values
}

output "values_nodeport" {
  value = module.values["nodeport"].sentry_values
}

output "agent_values" {
  value = module.values["managed"].agent_values
}
