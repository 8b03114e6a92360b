# Every password is generated here and goes into a Kubernetes Secret; the values files
# rendered by the module only name those Secrets.

resource "random_password" "postgres" {
  length  = 32
  special = false
}

resource "random_password" "redis" {
  length  = 32
  special = false
}

resource "random_password" "kafka" {
  length  = 32
  special = false
}

resource "random_password" "clickhouse" {
  length  = 32
  special = false
}

resource "random_password" "admin" {
  length  = 24
  special = false
}

resource "random_password" "secret_key" {
  length  = 64
  special = false
}

# PostgreSQL 16 (port 6432 through the pooler), with the citext extension Sentry needs.
resource "yandex_mdb_postgresql_cluster" "sentry" {
  name        = "sentry-postgresql"
  environment = "PRODUCTION"
  network_id  = var.network_id

  config {
    version = 16
    resources {
      resource_preset_id = "s3-c2-m8"
      disk_type_id       = "network-ssd"
      disk_size          = 50
    }
  }

  host {
    zone      = var.zone
    subnet_id = var.subnet_id
  }
}

resource "yandex_mdb_postgresql_user" "sentry" {
  cluster_id = yandex_mdb_postgresql_cluster.sentry.id
  name       = "sentry"
  password   = random_password.postgres.result
  conn_limit = 100
}

resource "yandex_mdb_postgresql_database" "sentry" {
  cluster_id = yandex_mdb_postgresql_cluster.sentry.id
  name       = "sentry"
  owner      = yandex_mdb_postgresql_user.sentry.name

  extension {
    name = "citext"
  }
}

# Redis 7.2 over TLS (port 6380).
resource "yandex_mdb_redis_cluster" "sentry" {
  name        = "sentry-redis"
  environment = "PRODUCTION"
  network_id  = var.network_id
  tls_enabled = true

  config {
    version  = "7.2"
    password = random_password.redis.result
  }

  resources {
    resource_preset_id = "hm3-c2-m8"
    disk_size          = 16
  }

  host {
    zone      = var.zone
    subnet_id = var.subnet_id
  }
}

# Kafka 3.6 with SASL_SSL and SCRAM-SHA-512 (port 9091). The sentry chart creates the topics
# (externalKafka.provisioning), so the user may administer them.
resource "yandex_mdb_kafka_cluster" "sentry" {
  name        = "sentry-kafka"
  environment = "PRODUCTION"
  network_id  = var.network_id
  subnet_ids  = [var.subnet_id]

  config {
    version          = "3.6"
    brokers_count    = 1
    zones            = [var.zone]
    assign_public_ip = false

    kafka {
      resources {
        resource_preset_id = "s3-c2-m8"
        disk_type_id       = "network-ssd"
        disk_size          = 64
      }
      kafka_config {
        auto_create_topics_enable  = false
        default_replication_factor = 1
      }
    }
  }
}

resource "yandex_mdb_kafka_user" "sentry" {
  cluster_id = yandex_mdb_kafka_cluster.sentry.id
  name       = "sentry"
  password   = random_password.kafka.result

  permission {
    topic_name = "*"
    role       = "ACCESS_ROLE_ADMIN"
  }
}

# ClickHouse 24.8 with three ZooKeeper hosts, one shard, cluster name as the module expects.
resource "yandex_mdb_clickhouse_cluster" "sentry" {
  name                = "sentry-clickhouse"
  environment         = "PRODUCTION"
  network_id          = var.network_id
  version             = "24.8"
  admin_password      = random_password.clickhouse.result
  sql_user_management = true

  clickhouse {
    resources {
      resource_preset_id = "s3-c4-m16"
      disk_type_id       = "network-ssd"
      disk_size          = 100
    }
  }

  zookeeper {
    resources {
      resource_preset_id = "s3-c2-m8"
      disk_type_id       = "network-ssd"
      disk_size          = 10
    }
  }

  host {
    type      = "CLICKHOUSE"
    zone      = var.zone
    subnet_id = var.subnet_id
  }

  dynamic "host" {
    for_each = range(3)
    content {
      type      = "ZOOKEEPER"
      zone      = var.zone
      subnet_id = var.subnet_id
    }
  }
}

# Object Storage: the filestore and the nodestore, expiring after 30 days.
resource "yandex_iam_service_account" "storage" {
  name = "sentry-storage"
}

resource "yandex_resourcemanager_folder_iam_member" "storage" {
  folder_id = var.folder_id
  role      = "storage.editor"
  member    = "serviceAccount:${yandex_iam_service_account.storage.id}"
}

resource "yandex_iam_service_account_static_access_key" "storage" {
  service_account_id = yandex_iam_service_account.storage.id
  description        = "Sentry filestore and nodestore"
}

resource "yandex_storage_bucket" "files" {
  bucket     = "${var.bucket_prefix}-sentry-files"
  access_key = yandex_iam_service_account_static_access_key.storage.access_key
  secret_key = yandex_iam_service_account_static_access_key.storage.secret_key

  lifecycle_rule {
    id      = "expire"
    enabled = true
    expiration {
      days = 30
    }
  }
}

resource "yandex_storage_bucket" "nodestore" {
  bucket     = "${var.bucket_prefix}-sentry-nodestore"
  access_key = yandex_iam_service_account_static_access_key.storage.access_key
  secret_key = yandex_iam_service_account_static_access_key.storage.secret_key

  lifecycle_rule {
    id      = "expire"
    enabled = true
    expiration {
      days = 30
    }
  }
}

# The Secrets the values name (keys as in deploy/secrets).
locals {
  secrets = {
    "sentry-admin"      = { "admin-password" = random_password.admin.result }
    "sentry-secret-key" = { "secret-key" = random_password.secret_key.result }
    "sentry-postgres"   = { "postgresql-password" = random_password.postgres.result }
    "sentry-redis"      = { "redis-password" = random_password.redis.result }
    "sentry-kafka" = {
      mechanism = "SCRAM-SHA-512"
      username  = yandex_mdb_kafka_user.sentry.name
      password  = random_password.kafka.result
    }
    "sentry-clickhouse" = { "clickhouse-password" = random_password.clickhouse.result }
    "sentry-s3" = {
      "s3-access-key-id"     = yandex_iam_service_account_static_access_key.storage.access_key
      "s3-secret-access-key" = yandex_iam_service_account_static_access_key.storage.secret_key
    }
  }
}

# Managed PostgreSQL, Redis, Kafka and ClickHouse present certificates of Yandex's internal
# CA: the bundle every Sentry pod trusts is the public roots plus that CA (ConfigMap
# sentry-ca-bundle, key ca-bundle.crt; mounted by global.volumes in the values).
data "http" "yandex_ca" {
  url = "https://storage.yandexcloud.net/cloud-certs/CA.pem"
}

resource "kubernetes_config_map_v1" "ca_bundle" {
  metadata {
    name      = "sentry-ca-bundle"
    namespace = var.namespace
  }
  data = {
    "ca-bundle.crt" = "${trimspace(file(var.system_ca_bundle))}\n${trimspace(data.http.yandex_ca.response_body)}\n"
  }
}

resource "kubernetes_secret_v1" "sentry" {
  for_each = local.secrets

  metadata {
    name      = each.key
    namespace = var.namespace
  }
  data = each.value
}

module "sentry_values" {
  source      = "../../sentry-values"
  namespace   = var.namespace
  ca_bundle   = kubernetes_config_map_v1.ca_bundle.metadata[0].name
  hostname    = var.hostname
  admin_email = var.admin_email
  ingress     = { cluster_issuer = var.cluster_issuer }
  postgres = {
    host = "c-${yandex_mdb_postgresql_cluster.sentry.id}.rw.mdb.yandexcloud.net"
    port = 6432
  }
  redis = {
    host = "c-${yandex_mdb_redis_cluster.sentry.id}.rw.mdb.yandexcloud.net"
    port = 6380
  }
  kafka = {
    brokers            = [for h in yandex_mdb_kafka_cluster.sentry.host : { host = h.name, port = 9091 } if h.role == "KAFKA"]
    replication_factor = 1
  }
  clickhouse = {
    host         = "c-${yandex_mdb_clickhouse_cluster.sentry.id}.rw.mdb.yandexcloud.net"
    username     = "admin"
    cluster_name = yandex_mdb_clickhouse_cluster.sentry.cluster_name
  }
  s3 = {
    endpoint         = "https://storage.yandexcloud.net"
    region           = "ru-central1"
    filestore_bucket = yandex_storage_bucket.files.bucket
    nodestore_bucket = yandex_storage_bucket.nodestore.bucket
  }
}

output "sentry_values" {
  description = "Values for the sentry chart: terraform output -raw sentry_values > values.yaml"
  value       = module.sentry_values.sentry_values
}

output "agent_values" {
  description = "Values for helm/sentry-kubernetes."
  value       = module.sentry_values.agent_values
}
