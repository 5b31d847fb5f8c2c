# A one-node Garage for ladder's media, as an example of S3 on the cluster itself (AWS S3 or any S3 store does
# as well: point ladder's `storage` and `s3_endpoint` at it). The node's data and metadata live on a host
# volume (`garage` in the client's configuration). A poststart task makes the layout, the `ladder` bucket and
# its key, as deploy/compose/garage-init.sh does.
#
# Nomad Variables at nomad/jobs/garage: rpc_secret (openssl rand -hex 32), and the key ladder uses
# (aws_access_key_id: GK followed by 24 hex digits, aws_secret_access_key: 64 hex digits), the same as in
# nomad/jobs/ladder.
#
#   nomad job run garage.nomad.hcl

variable "image" {
  type    = string
  default = "dxflrs/garage:v2.5.0"
}

# The garage CLI with a shell (deploy/docker/garage-init/Dockerfile).
variable "init_image" {
  type    = string
  default = "ladder-garage-init:dev"
}

job "garage" {
  datacenters = ["dc1"]
  type        = "service"

  group "garage" {
    count = 1

    volume "garage" {
      type   = "host"
      source = "garage"
    }

    network {
      port "s3" {
        static = 3900
      }
      port "rpc" {
        static = 3901
      }
      port "admin" {
        static = 3903
      }
    }

    service {
      name     = "garage"
      port     = "s3"
      provider = "nomad"
      # The admin API's health endpoint: 200 once the node can serve requests.
      check {
        type     = "http"
        port     = "admin"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "garage" {
      driver = "docker"
      config {
        image   = var.image
        ports   = ["s3", "rpc", "admin"]
        command = "/garage"
        args    = ["-c", "/secrets/garage.toml", "server"]
      }
      volume_mount {
        volume      = "garage"
        destination = "/var/lib/garage"
      }
      template {
        destination = "secrets/garage.toml"
        data        = <<-EOT
          metadata_dir = "/var/lib/garage/meta"
          data_dir = "/var/lib/garage/data"
          db_engine = "sqlite"
          replication_factor = 1
          rpc_bind_addr = "[::]:3901"
          rpc_public_addr = "{{ env "NOMAD_ADDR_rpc" }}"
          rpc_secret = "{{ with nomadVar "nomad/jobs/garage" }}{{ .rpc_secret }}{{ end }}"

          [s3_api]
          s3_region = "garage"
          api_bind_addr = "[::]:3900"
          root_domain = ".s3.garage.localhost"

          [admin]
          api_bind_addr = "[::]:3903"
        EOT
      }
      resources {
        cpu    = 1000
        memory = 1024
      }
    }

    task "init" {
      driver = "docker"
      lifecycle {
        hook    = "poststart"
        sidecar = false
      }
      config {
        image   = var.init_image
        command = "sh"
        args    = ["/local/garage-init.sh"]
      }
      # The CLI finds the node by the node key in its metadata directory.
      volume_mount {
        volume      = "garage"
        destination = "/var/lib/garage"
        read_only   = true
      }
      template {
        destination = "secrets/garage.toml"
        data        = <<-EOT
          metadata_dir = "/var/lib/garage/meta"
          data_dir = "/var/lib/garage/data"
          db_engine = "sqlite"
          replication_factor = 1
          rpc_bind_addr = "[::]:3901"
          rpc_public_addr = "{{ env "NOMAD_ADDR_rpc" }}"
          rpc_secret = "{{ with nomadVar "nomad/jobs/garage" }}{{ .rpc_secret }}{{ end }}"
        EOT
      }
      template {
        destination = "secrets/key.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/garage" }}
          AWS_ACCESS_KEY_ID={{ .aws_access_key_id }}
          AWS_SECRET_ACCESS_KEY={{ .aws_secret_access_key }}
          {{ end }}
        EOT
      }
      # deploy/compose/garage-init.sh, reading the config from secrets/.
      template {
        destination = "local/garage-init.sh"
        data        = <<-EOT
          set -eu
          G="garage -c /secrets/garage.toml"
          until $G status >/dev/null 2>&1; do sleep 1; done
          NODE=$($G node id -q | cut -d@ -f1)
          if $G layout show 2>/dev/null | grep -q "No nodes currently have a role"; then
            $G layout assign -z dc1 -c 100G "$NODE"
            $G layout apply --version 1
          fi
          $G bucket info ladder >/dev/null 2>&1 || $G bucket create ladder
          $G key info "$AWS_ACCESS_KEY_ID" >/dev/null 2>&1 ||
            $G key import --yes -n ladder "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
          $G bucket allow --read --write --owner ladder --key "$AWS_ACCESS_KEY_ID"
          echo "garage-init: bucket ladder ready"
        EOT
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
