# ladder on a Nomad cluster: one group per service, all running the `ladder` image (the repository's
# Dockerfile) with the Docker driver. NATS, S3 and ScyllaDB are the cluster's own (see nats.nomad.hcl for a
# NATS cluster); point the variables below at them.
#
#   nomad job run -var 'nats_url=nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222' ladder.nomad.hcl
#
# Secrets (S3 keys, the API token) come from Nomad Variables at nomad/jobs/ladder, read by the templates.

variable "image" {
  type    = string
  default = "ladder:dev"
}

# Required: the NATS servers, comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222,...`).
variable "nats_url" {
  type = string
}

variable "storage" {
  type    = string
  default = "s3://ladder"
}

# Required: the S3 endpoint (Garage's, or `https://s3.<region>.amazonaws.com` for AWS).
variable "s3_endpoint" {
  type = string
}

# Required: the ScyllaDB nodes (`scylla://10.0.0.11:9042,10.0.0.12:9042/ladder?replication_factor=3`).
variable "index" {
  type = string
}

job "ladder" {
  datacenters = ["dc1"]
  type        = "service"

  # Rolling deploys, one instance at a time, back to the previous version if the new one never gets ready.
  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "ingest" {
    count = 2

    # SRT publishers connect to a fixed UDP port on every ingest host: one ingest per host.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    network {
      port "srt" {
        static = 9000
      }
      port "metrics" {}
    }

    service {
      name     = "ladder-ingest"
      port     = "metrics"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "ingest" {
      driver = "docker"
      config {
        image = var.image
        ports = ["srt", "metrics"]
        args  = ["ingest", "--srt-listen", "0.0.0.0:9000"]
      }
      env {
        LADDER_NATS_URL       = var.nats_url
        LADDER_NATS_REPLICAS  = "3"
        LADDER_METRICS_LISTEN = "0.0.0.0:${NOMAD_PORT_metrics}"
        LADDER_MAX_PUBLISHERS = "200"
        LADDER_INSTANCE       = "${NOMAD_ALLOC_NAME}"
      }
      # `make bench` (bench/RESULTS.md, ingest capacity): about 1 % of a core per 2 Mb/s publisher.
      resources {
        cpu    = 500
        memory = 512
      }
    }
  }

  group "segmenter" {
    count = 2
    network {
      port "metrics" {}
    }
    service {
      name     = "ladder-segmenter"
      port     = "metrics"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }
    task "segmenter" {
      driver = "docker"
      config {
        image = var.image
        ports = ["metrics"]
        args  = ["segmenter", "--target-duration", "2"]
      }
      env {
        LADDER_NATS_URL       = var.nats_url
        LADDER_NATS_REPLICAS  = "3"
        LADDER_STORAGE        = var.storage
        AWS_ENDPOINT_URL      = var.s3_endpoint
        LADDER_METRICS_LISTEN = "0.0.0.0:${NOMAD_PORT_metrics}"
        LADDER_INSTANCE       = "${NOMAD_ALLOC_NAME}"
      }
      template {
        destination = "secrets/s3.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/ladder" }}
          AWS_ACCESS_KEY_ID={{ .aws_access_key_id }}
          AWS_SECRET_ACCESS_KEY={{ .aws_secret_access_key }}
          AWS_REGION={{ .aws_region }}
          {{ end }}
        EOT
      }
      resources {
        cpu    = 300
        memory = 256
      }
    }
  }

  group "transcoder" {
    # One worker per live stream and a spare or two, over all transcoders (see the README).
    count = 4
    network {
      port "metrics" {}
    }
    service {
      name     = "ladder-transcoder"
      port     = "metrics"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }
    task "transcoder" {
      driver = "docker"
      # In-flight chunks get their shutdown grace (10 s) before they are handed back.
      kill_timeout = "20s"
      config {
        image = var.image
        ports = ["metrics"]
        args  = ["transcoder", "--workers", "2", "--preset", "veryfast"]
      }
      env {
        LADDER_NATS_URL       = var.nats_url
        LADDER_NATS_REPLICAS  = "3"
        LADDER_STORAGE        = var.storage
        AWS_ENDPOINT_URL      = var.s3_endpoint
        LADDER_METRICS_LISTEN = "0.0.0.0:${NOMAD_PORT_metrics}"
        LADDER_INSTANCE       = "${NOMAD_ALLOC_NAME}"
      }
      template {
        destination = "secrets/s3.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/ladder" }}
          AWS_ACCESS_KEY_ID={{ .aws_access_key_id }}
          AWS_SECRET_ACCESS_KEY={{ .aws_secret_access_key }}
          AWS_REGION={{ .aws_region }}
          {{ end }}
        EOT
      }
      # `make bench` (bench/RESULTS.md, transcode efficiency): a 720p25 source into the built-in three renditions
      # costs about 1.3 cores per live stream, the whole stack included; 3000 MHz is about one stream.
      resources {
        cpu    = 3000
        memory = 1024
      }
    }
  }

  group "indexer" {
    count = 2
    network {
      port "metrics" {}
    }
    service {
      name     = "ladder-indexer"
      port     = "metrics"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }
    task "indexer" {
      driver = "docker"
      config {
        image = var.image
        ports = ["metrics"]
        args  = ["indexer"]
      }
      env {
        LADDER_NATS_URL       = var.nats_url
        LADDER_NATS_REPLICAS  = "3"
        LADDER_INDEX          = var.index
        LADDER_METRICS_LISTEN = "0.0.0.0:${NOMAD_PORT_metrics}"
      }
      resources {
        cpu    = 200
        memory = 128
      }
    }
  }

  group "manifest" {
    count = 2
    network {
      port "http" {
        to = 8080
      }
      port "metrics" {}
    }
    service {
      name     = "ladder-manifest"
      port     = "http"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/"
        interval = "5s"
        timeout  = "2s"
      }
    }
    service {
      name     = "ladder-manifest-metrics"
      port     = "metrics"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }
    task "manifest" {
      driver = "docker"
      config {
        image = var.image
        ports = ["http", "metrics"]
        args  = ["manifest", "--http-listen", "0.0.0.0:8080"]
      }
      env {
        LADDER_NATS_URL       = var.nats_url
        LADDER_NATS_REPLICAS  = "3"
        LADDER_STORAGE        = var.storage
        AWS_ENDPOINT_URL      = var.s3_endpoint
        LADDER_INDEX          = var.index
        LADDER_METRICS_LISTEN = "0.0.0.0:${NOMAD_PORT_metrics}"
        LADDER_MEDIA_CACHE_MB = "256"
      }
      template {
        destination = "secrets/s3.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/ladder" }}
          AWS_ACCESS_KEY_ID={{ .aws_access_key_id }}
          AWS_SECRET_ACCESS_KEY={{ .aws_secret_access_key }}
          AWS_REGION={{ .aws_region }}
          {{ end }}
        EOT
      }
      resources {
        cpu    = 500
        memory = 512
      }
    }
  }

  group "api" {
    count = 1
    network {
      port "grpc" {
        to = 50051
      }
      port "metrics" {}
    }
    service {
      name     = "ladder-api"
      port     = "metrics"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }
    task "api" {
      driver = "docker"
      config {
        image = var.image
        ports = ["grpc", "metrics"]
        args  = ["api", "--api-listen", "0.0.0.0:50051"]
      }
      env {
        LADDER_NATS_URL       = var.nats_url
        LADDER_NATS_REPLICAS  = "3"
        LADDER_METRICS_LISTEN = "0.0.0.0:${NOMAD_PORT_metrics}"
      }
      template {
        destination = "secrets/api.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/ladder" }}LADDER_API_TOKEN={{ .api_token }}{{ end }}
        EOT
      }
      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
