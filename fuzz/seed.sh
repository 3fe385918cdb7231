#!/bin/sh
# Seed corpora for every target from the fixtures (run from fuzz/). corpus/ is not
# committed; libFuzzer adds what it finds to these directories.
set -eu
F=../fixtures/albatross
mkdir -p corpus/wire_decode corpus/config_load corpus/api_json corpus/proxmox_json corpus/cert_chain

# wire_decode: every codec fixture, split byte 0x10.
for f in "$F"/*.bin; do (printf '\020'; cat "$f") > "corpus/wire_decode/$(basename "$f")"; done

# config_load: the shipped and test configurations.
for f in ../config/*.toml ../fixtures/schedule/*.toml ../fixtures/traces/*.toml; do
    cp "$f" "corpus/config_load/$(basename "$(dirname "$f")")-$(basename "$f")"
done

# api_json: scale bodies and query values.
i=0
for s in '{"target": 3}' '{"target":0}' '{"target": 4294967295}' '{"target": 2, "x": 1}' \
         '{"target": -1}' '{"target": 2.5}' '[3]' '2026-11-23T10:00:00Z' 'now' '-1h' '2d 3h' \
         'raw' '5m' '10ms'; do
    i=$((i + 1)); printf '%s' "$s" > "corpus/api_json/seed-$i"
done

# proxmox_json: first byte picks the error status, the rest is the body.
i=0
for s in \
    '{"data":[{"id":"lxc/101","type":"lxc","vmid":"101","node":"pve","status":"running","cpu":"0.5","maxcpu":2,"mem":1048576,"maxmem":"2097152","template":0,"tags":"a;albatross-autoscale"},{"id":"node/pve","type":"node","node":"pve","maxmem":8589934592,"mem":1}]}' \
    '{"data":{"cores":2,"cpulimit":"1.5","memory":"512","hostname":"web","digest":"ab","lock":"backup"}}' \
    '{"data":{"status":"stopped","exitstatus":"WARNINGS: 2"}}' \
    '{"data":"UPID:pve2:0000AB12:00C0FFEE:65000000:vzclone:101:a@pve!s:"}' \
    '{"data":"105"}' '{"data":105}' '{"data":null}' \
    '{"data":null,"message":"parameter verification failed\n","errors":{"cores":"value must be at least 1"}}' \
    '{"message":"  "}'; do
    i=$((i + 1)); (printf '\004'; printf '%s' "$s") > "corpus/proxmox_json/seed-$i"
done

# cert_chain: PEM chains, single PEM certificates, DER certificates.
for f in "$F"/*.pem "$F"/*.der; do
    case "$f" in *.key.pem|*.csr.pem) continue ;; esac
    cp "$f" "corpus/cert_chain/$(basename "$f")"
done
