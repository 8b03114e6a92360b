# Renders the values files from the typed inputs; see README in deploy/.
locals {
  inputs = {
    chart_version = var.chart_version
    namespace     = var.namespace
    hostname      = var.hostname
    admin_email   = var.admin_email
    postgres      = var.postgres
    redis         = var.redis
    kafka         = var.kafka
    clickhouse    = var.clickhouse
    s3            = var.s3
    secrets       = var.secrets
    ingress       = var.ingress
    replicas      = var.replicas
    github        = var.github
    agent         = var.agent
  }
}
