#!/bin/sh
# Installs the Nerve agent on this node; served by `nerve serve` at /install.sh, which fills in
# the API's and NATS's URLs:
#   curl -fsSL --cacert ca.pem https://nerve:8080/install.sh | sudo sh -s -- --cacert ca.pem --enroll <token>
# It downloads the binary (/download/nerve), checks it against /download/nerve.sha256, installs
# /usr/local/bin/nerve, /etc/nerve/agent.toml (kept if present), the enrollment token in
# /etc/nerve/agent.env (0600; the agent enrolls with it on first start) and the systemd units
# nerve-agent.service and nerve-tasks.slice, then enables and starts the agent.
#   --enroll TOKEN   an enrollment token (`nerve enrollment create`)
#   --cacert FILE    the CA of the API's (and NATS's) certificate; copied to /etc/nerve/ca.pem
#   --api URL        the API (default: @API_URL@)
#   --nats URL       NATS (default: @NATS_URL@)
#   --root DIR       install under DIR instead of / (implies --no-start)
#   --no-start       install only: no systemctl
set -eu

api='@API_URL@'
nats='@NATS_URL@'
root=/
token=
cacert=
start=1

die() { echo "install.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --enroll) [ $# -ge 2 ] || die "--enroll needs a token"; token=$2; shift 2 ;;
    --cacert) [ $# -ge 2 ] || die "--cacert needs a file"; cacert=$2; shift 2 ;;
    --api) [ $# -ge 2 ] || die "--api needs a URL"; api=$2; shift 2 ;;
    --nats) [ $# -ge 2 ] || die "--nats needs a URL"; nats=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; start=0; shift 2 ;;
    --no-start) start=0; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done
case "$token$api$nats" in *\"*|*\\*) die "quotes and backslashes are not allowed in --enroll, --api or --nats" ;; esac
[ -z "$cacert" ] || [ -r "$cacert" ] || die "cannot read $cacert"
command -v curl >/dev/null || die "curl is needed"
command -v sha256sum >/dev/null || die "sha256sum is needed"

fetch() {
  if [ -n "$cacert" ]; then curl -fsSL --cacert "$cacert" -o "$2" "$api$1"; else curl -fsSL -o "$2" "$api$1"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "install.sh: downloading $api/download/nerve" >&2
fetch /download/nerve "$tmp/nerve"
fetch /download/nerve.sha256 "$tmp/nerve.sha256"
want=$(cut -d' ' -f1 "$tmp/nerve.sha256")
got=$(sha256sum "$tmp/nerve" | cut -d' ' -f1)
[ -n "$want" ] && [ "$want" = "$got" ] || die "checksum mismatch: expected $want, downloaded $got"

etc="$root/etc/nerve"
mkdir -p "$root/usr/local/bin" "$etc" "$root/etc/systemd/system"
install -m 0755 "$tmp/nerve" "$root/usr/local/bin/nerve"
ca_line=
if [ -n "$cacert" ]; then
  install -m 0644 "$cacert" "$etc/ca.pem"
  ca_line='/etc/nerve/ca.pem'
fi
if [ ! -e "$etc/agent.toml" ]; then
  cat > "$etc/agent.toml" <<TOML
# Written by install.sh; see nerve.example.toml for every setting ([nats] and [agent] matter here).
[nats]
url = "$nats"
tls_ca_file = "$ca_line"

[agent]
state_dir = "/var/lib/nerve-agent"
api_url = "$api"
api_ca_file = "$ca_line"
TOML
fi
if [ -n "$token" ]; then
  (umask 077 && printf 'NERVE_AGENT__ENROLL_TOKEN=%s\n' "$token" > "$etc/agent.env")
fi
cat > "$root/etc/systemd/system/nerve-agent.service" <<'UNIT'
@AGENT_UNIT@
UNIT
cat > "$root/etc/systemd/system/nerve-tasks.slice" <<'UNIT'
@TASKS_SLICE@
UNIT
echo "install.sh: installed $root/usr/local/bin/nerve (sha256 $got)" >&2
if [ "$start" = 1 ]; then
  systemctl daemon-reload
  systemctl enable --now nerve-agent.service
  echo "install.sh: nerve-agent.service started" >&2
fi
