variable "chart_version" {
  description = "Version of the community sentry chart the values are written for."
  type        = string
  default     = "33.7.0"
  validation {
    condition     = can(regex("^33\\.[0-9]+\\.[0-9]+$", var.chart_version))
    error_message = "The values use the keys of the sentry chart 33.x (externalClickhouse required, nodestore.s3, provisioning); chart_version must be 33.x.y."
  }
}

variable "namespace" {
  description = "Namespace Sentry is installed in."
  type        = string
  default     = "sentry"
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "hostname" {
  description = "Public host name of Sentry (the ingress host and system.url)."
  type        = string
  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9]*[a-z0-9])?\\.)+[a-z]{2,}$", var.hostname))
    error_message = "hostname must be a fully qualified DNS name such as sentry.example.com."
  }
}

variable "admin_email" {
  description = "E-mail of the admin user created at install (its password comes from secrets.admin)."
  type        = string
  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.admin_email))
    error_message = "admin_email must be an e-mail address."
  }
}

variable "postgres" {
  description = "The external PostgreSQL (TLS required)."
  type = object({
    host     = string
    port     = optional(number, 5432)
    database = optional(string, "sentry")
    username = optional(string, "sentry")
    ssl_mode = optional(string, "verify-full")
  })
  validation {
    condition     = var.postgres.ssl_mode == "verify-full"
    error_message = "postgres.ssl_mode must be verify-full: TLS whose certificate chains to the CA bundle and names the host (require and verify-ca accept a server of another name)."
  }
  validation {
    condition     = var.postgres.port > 0 && var.postgres.port < 65536
    error_message = "postgres.port must be a TCP port."
  }
}

variable "redis" {
  description = "The external Redis (TLS)."
  type = object({
    host = string
    port = optional(number, 6380)
    db   = optional(number, 0)
  })
  validation {
    condition     = var.redis.db >= 0 && var.redis.db <= 15
    error_message = "redis.db must be 0-15."
  }
}

variable "kafka" {
  description = "The external Kafka (SASL_SSL with SCRAM); topics are created by the chart."
  type = object({
    brokers            = list(object({ host = string, port = number }))
    mechanism          = optional(string, "SCRAM-SHA-512")
    replication_factor = optional(number, 3)
    partitions         = optional(number, 1)
  })
  validation {
    condition     = length(var.kafka.brokers) > 0
    error_message = "kafka.brokers must list at least one broker."
  }
  validation {
    condition     = contains(["SCRAM-SHA-256", "SCRAM-SHA-512"], var.kafka.mechanism)
    error_message = "kafka.mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512."
  }
  validation {
    condition     = var.kafka.replication_factor >= 1 && var.kafka.replication_factor <= length(var.kafka.brokers)
    error_message = "kafka.replication_factor must be between 1 and the number of brokers."
  }
}

variable "clickhouse" {
  description = "The ClickHouse cluster (managed, or the Altinity installation in deploy/clickhouse), over TLS."
  type = object({
    host                     = string
    tcp_port                 = optional(number, 9440)
    http_port                = optional(number, 8443)
    username                 = optional(string, "sentry")
    database                 = optional(string, "default")
    cluster_name             = string
    distributed_cluster_name = optional(string)
  })
  validation {
    condition     = can(regex("^[A-Za-z0-9_-]+$", var.clickhouse.cluster_name))
    error_message = "clickhouse.cluster_name must be the cluster's name in system.clusters."
  }
}

variable "s3" {
  description = "S3-compatible object storage for the filestore and the nodestore."
  type = object({
    endpoint         = string
    region           = string
    filestore_bucket = string
    nodestore_bucket = string
    nodestore_path   = optional(string, "nodestore")
  })
  validation {
    condition     = startswith(var.s3.endpoint, "https://")
    error_message = "s3.endpoint must be an https:// URL."
  }
  validation {
    condition     = alltrue([for b in [var.s3.filestore_bucket, var.s3.nodestore_bucket] : can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", b))])
    error_message = "Bucket names must be valid S3 bucket names."
  }
}

variable "secrets" {
  description = "Names of the Kubernetes Secrets holding every credential (see deploy/secrets). No credential is ever a variable of this module."
  type = object({
    admin      = optional(string, "sentry-admin")
    secret_key = optional(string, "sentry-secret-key")
    postgres   = optional(string, "sentry-postgres")
    redis      = optional(string, "sentry-redis")
    kafka      = optional(string, "sentry-kafka")
    clickhouse = optional(string, "sentry-clickhouse")
    s3         = optional(string, "sentry-s3")
    github     = optional(string, "sentry-github")
    agent_dsn  = optional(string, "sentry-kubernetes-dsn")
    smoke_dsn  = optional(string, "sentry-smoke-dsn")
  })
  default = {}
  validation {
    condition     = alltrue([for name in values(var.secrets) : can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", name))])
    error_message = "Secret names must be DNS-1123 subdomains."
  }
}

variable "ingress" {
  description = "The ingress (TLS). Disabled: a NodePort service instead, for minikube-style clusters."
  type = object({
    enabled        = optional(bool, true)
    class_name     = optional(string, "nginx")
    tls_secret     = optional(string, "sentry-tls")
    cluster_issuer = optional(string)
  })
  default = {}
}

variable "replicas" {
  description = "Replicas of web, relay and each taskworker pool: at least 2, so a node drain or a rollout never takes them down."
  type = object({
    web        = optional(number, 2)
    relay      = optional(number, 2)
    taskworker = optional(number, 2)
  })
  default = {}
  validation {
    condition     = var.replicas.web >= 2 && var.replicas.relay >= 2 && var.replicas.taskworker >= 2
    error_message = "replicas.web, replicas.relay and replicas.taskworker must be at least 2 (with their PodDisruptionBudgets, a drain keeps one)."
  }
}

variable "taskworker_pools" {
  description = "Names of the chart's taskworker pools (sentry.taskWorker.workers[].name of chart 33.7.0); their PodDisruptionBudget selects role=taskworker-<name>."
  type        = list(string)
  default     = ["default", "ingest", "products"]
  validation {
    condition     = length(var.taskworker_pools) > 0 && alltrue([for p in var.taskworker_pools : can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", p))])
    error_message = "taskworker_pools must name at least one pool, each a DNS-1123 label."
  }
}

variable "ca_bundle" {
  description = "ConfigMap (key ca-bundle.crt) holding the public roots plus the CA(s) of PostgreSQL, Redis, Kafka and ClickHouse; mounted as the system trust store of every Sentry pod."
  type        = string
  default     = "sentry-ca-bundle"
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.ca_bundle))
    error_message = "ca_bundle must be a ConfigMap name (DNS-1123 subdomain)."
  }
}

variable "nodeport" {
  description = "Node ports of web (UI, API) and relay (SDKs, the agent) when the ingress is disabled."
  type = object({
    web   = optional(number, 30900)
    relay = optional(number, 30300)
  })
  default = {}
  validation {
    condition     = alltrue([for p in [var.nodeport.web, var.nodeport.relay] : p >= 30000 && p <= 32767]) && var.nodeport.web != var.nodeport.relay
    error_message = "nodeport.web and nodeport.relay must be two different ports in 30000-32767."
  }
}

variable "github" {
  description = "GitHub App for SSO and the integration (its keys are in secrets.github); null disables it."
  type = object({
    app_id   = string
    app_name = string
  })
  default = null
}

variable "agent" {
  description = "The sentry-kubernetes agent installed beside Sentry."
  type = object({
    watch_namespaces = optional(string, "__all__")
    cluster_name     = optional(string, "")
    environment      = optional(string, "production")
  })
  default = {}
}
