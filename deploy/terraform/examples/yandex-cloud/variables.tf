variable "folder_id" {
  description = "Yandex Cloud folder of every resource."
  type        = string
}

variable "zone" {
  description = "Availability zone of the single-zone resources."
  type        = string
  default     = "ru-central1-a"
}

variable "network_id" {
  description = "VPC network the Kubernetes cluster is in."
  type        = string
}

variable "subnet_id" {
  description = "Subnet of the managed databases (reachable from the cluster's nodes)."
  type        = string
}

variable "kubeconfig_path" {
  description = "Kubeconfig of the cluster Sentry runs in (the Secrets are created there)."
  type        = string
  default     = "~/.kube/config"
}

variable "namespace" {
  description = "Namespace Sentry is installed in."
  type        = string
  default     = "sentry"
}

variable "hostname" {
  description = "Public host name of Sentry."
  type        = string
}

variable "cluster_issuer" {
  description = "cert-manager ClusterIssuer that issues the ingress certificate (Secret sentry-tls)."
  type        = string
  default     = "letsencrypt"
}

variable "admin_email" {
  description = "E-mail of the Sentry admin user."
  type        = string
}

variable "bucket_prefix" {
  description = "Prefix of the two bucket names (globally unique in Object Storage)."
  type        = string
}

variable "system_ca_bundle" {
  description = "PEM file with the public root CAs (Debian/Ubuntu path by default); Yandex's CA is appended to it for the pods' trust store."
  type        = string
  default     = "/etc/ssl/certs/ca-certificates.crt"
}
