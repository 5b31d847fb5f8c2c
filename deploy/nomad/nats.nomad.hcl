# A 3-node NATS JetStream cluster for ladder: one server per host on static ports (clients 4222, routes 6222,
# monitoring 8222), each finding the others through Nomad's service discovery, JetStream on a host volume
# (`nats-jetstream` in each client's configuration). ladder creates its streams with 3 replicas on it.
#
#   nomad job run nats.nomad.hcl
#   nomad job run -var 'nats_url=nats://nats.service.consul:4222' ladder.nomad.hcl   # or the hosts' addresses

variable "image" {
  type    = string
  default = "nats:2.10-alpine"
}

job "nats" {
  datacenters = ["dc1"]
  type        = "service"

  # One server at a time, and only once the restarted one is back in the cluster with JetStream current.
  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "30s"
    healthy_deadline = "5m"
  }

  group "nats" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    volume "jetstream" {
      type   = "host"
      source = "nats-jetstream"
    }

    network {
      port "client" {
        static = 4222
      }
      port "cluster" {
        static = 6222
      }
      port "monitor" {
        static = 8222
      }
    }

    service {
      name     = "nats"
      port     = "client"
      provider = "nomad"
      # Healthy when JetStream is up and current on this server.
      check {
        type     = "http"
        port     = "monitor"
        path     = "/healthz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    service {
      name     = "nats-cluster"
      port     = "cluster"
      provider = "nomad"
    }

    task "nats" {
      driver = "docker"
      config {
        image = var.image
        ports = ["client", "cluster", "monitor"]
        args  = ["-c", "/local/nats.conf"]
      }
      volume_mount {
        volume      = "jetstream"
        destination = "/data"
      }
      # The routes are the cluster's servers as Nomad knows them; NATS reloads them on SIGHUP as servers come
      # and go (a route to itself is ignored). The server name follows the allocation index, so it is stable.
      template {
        destination   = "local/nats.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          server_name: nats-{{ env "NOMAD_ALLOC_INDEX" }}
          listen: 0.0.0.0:4222
          http: 0.0.0.0:8222
          jetstream {
            store_dir: /data
            max_file_store: 50G
          }
          cluster {
            name: ladder
            listen: 0.0.0.0:6222
            routes: [
          {{- range nomadService "nats-cluster" }}
              nats-route://{{ .Address }}:{{ .Port }}
          {{- end }}
            ]
          }
        EOT
      }
      resources {
        cpu    = 1000
        memory = 1024
      }
    }
  }
}
