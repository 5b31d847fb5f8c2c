# A 3-node NATS JetStream cluster for ladder: one server per host on static ports (clients 4222, routes 6222,
# monitoring 8222), JetStream on a host volume (`nats-jetstream` in each client's configuration). ladder
# creates its streams with 3 replicas on it. The routes are the three hosts, given up front: a JetStream
# cluster does not start without them, so they cannot wait for service discovery.
#
#   nomad job run -var 'routes=["nats-route://10.0.0.1:6222","nats-route://10.0.0.2:6222","nats-route://10.0.0.3:6222"]' nats.nomad.hcl
#   nomad job run -var 'nats_url=nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222' ... ladder.nomad.hcl

variable "image" {
  type    = string
  default = "nats:2.10-alpine"
}

# Required: the route URL of every server's host (a route to itself is ignored).
variable "routes" {
  type = list(string)
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
      # Each server advertises its host's address (not the container's) to clients and to the other servers.
      # The server name follows the allocation index, so it stays the same across reschedules.
      template {
        destination = "local/nats.conf"
        data        = <<-EOT
          server_name: nats-{{ env "NOMAD_ALLOC_INDEX" }}
          listen: 0.0.0.0:4222
          client_advertise: {{ env "NOMAD_ADDR_client" }}
          http: 0.0.0.0:8222
          jetstream {
            store_dir: /data
            max_file_store: 50G
          }
          cluster {
            name: ladder
            listen: 0.0.0.0:6222
            advertise: {{ env "NOMAD_ADDR_cluster" }}
            routes: ${jsonencode(var.routes)}
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
