#!/usr/bin/env bash
# Builds the local cluster's Go programs from their pinned Go modules with the machine's Go.
# Output: $WEIR_CACHE/bin/<part>-<version>/ ; a part is rebuilt only when its version changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${WEIR_CACHE:-$HOME/.cache/weir}
export CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
log() { printf '[build] %s\n' "$*" >&2; }

# The directory of module $1 in Go's module cache (downloaded first when missing).
module_dir() {
  (cd /tmp && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
}

# Creates a throwaway wrapper module in $1 requiring module $2 at version $3.
wrapper() {
  local dir=$1 module=$2 version=$3
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && go mod init weir.local/build >/dev/null 2>&1 && go mod edit -require="$module@$version")
}

build_kubernetes() {
  local out="$cache/bin/kubernetes-$KUBERNETES_VERSION"
  [ -x "$out/kubectl" ] && return 0
  log "kubernetes $KUBERNETES_VERSION (cold: ~15-25 min on 2 cores)"
  local dir="$cache/src/kubernetes-$KUBERNETES_VERSION"
  wrapper "$dir" k8s.io/kubernetes "$KUBERNETES_VERSION"
  cd "$dir"
  local gomod staging v=${KUBERNETES_VERSION#v} minor
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # The release's go.mod requires its staging modules at v0.0.0; each is published as v0.<minor>.<patch>.
  staging=$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod")
  for m in $staging; do go mod edit -replace="$m=$m@v0.${v#*.}"; done
  go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
  go mod tidy -e >/dev/null 2>&1 || true
  minor=$(echo "$v" | cut -d. -f2)
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  mkdir -p "$out.tmp"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    log "  go build $cmd"
    go get "k8s.io/kubernetes/cmd/$cmd@$KUBERNETES_VERSION" >/dev/null 2>&1 || true
    go build -ldflags "$ld" -o "$out.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_etcd() {
  local out="$cache/bin/etcd-$ETCD_VERSION"
  [ -x "$out/etcd" ] && return 0
  log "etcd $ETCD_VERSION"
  local dir="$cache/src/etcd-$ETCD_VERSION"
  wrapper "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  cat >"$dir/main.go" <<'GO'
// Command etcd is the upstream etcd server, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" && go mod tidy >/dev/null && mkdir -p "$out.tmp" && go build -ldflags "-s -w" -o "$out.tmp/etcd" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_kwok() {
  local out="$cache/bin/kwok-$KWOK_VERSION"
  [ -x "$out/kwok" ] && return 0
  log "kwok $KWOK_VERSION"
  local dir="$cache/src/kwok-$KWOK_VERSION"
  wrapper "$dir" sigs.k8s.io/kwok "$KWOK_VERSION"
  (cd "$dir" && go get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >/dev/null 2>&1 && mkdir -p "$out.tmp" \
    && go build -ldflags "-s -w" -o "$out.tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)
  # The stages (node initialise/heartbeat, pod ready/complete/delete) ship inside the module.
  local src
  src=$(cd "$dir" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  cp -r "$src/kustomize/stage" "$out.tmp/stage" && chmod -R u+w "$out.tmp/stage"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_helm() {
  local out="$cache/bin/helm-$HELM_VERSION"
  # The recipe number changes when the build flags do: an old binary is rebuilt.
  local recipe=2
  [ -x "$out/helm" ] && [ "$(cat "$out/.recipe" 2>/dev/null)" = "$recipe" ] && return 0
  log "helm $HELM_VERSION"
  local dir="$cache/src/helm-$HELM_VERSION"
  wrapper "$dir" helm.sh/helm/v3 "$HELM_VERSION"
  (cd "$dir" && go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >/dev/null 2>&1 && mkdir -p "$out.tmp" \
    && kv=$(go list -m -f '{{.Version}}' k8s.io/client-go) && major=1 && minor=$(echo "$kv" | cut -d. -f2) \
    && ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    && for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do ld+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"; done \
    && go build -ldflags "$ld" -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm && echo "$recipe" > "$out.tmp/.recipe")
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# Flux's apply engine (github.com/fluxcd/pkg/ssa) behind a small command of ours, for GitOps tests.
build_flux_apply() {
  local recipe out
  recipe=$(sha256sum "$here/flux-apply/main.go" | cut -c1-12)
  out="$cache/bin/flux-apply-$FLUX_SSA_VERSION-$recipe"
  [ -x "$out/flux-apply" ] && return 0
  log "flux-apply (fluxcd/pkg/ssa $FLUX_SSA_VERSION)"
  local dir="$cache/src/flux-apply-$FLUX_SSA_VERSION"
  wrapper "$dir" github.com/fluxcd/pkg/ssa "$FLUX_SSA_VERSION"
  cp "$here/flux-apply/main.go" "$dir/main.go"
  (cd "$dir" && go mod tidy >/dev/null && go mod edit -require="github.com/fluxcd/pkg/ssa@$FLUX_SSA_VERSION" && go mod tidy >/dev/null \
    && mkdir -p "$out.tmp" && go build -ldflags "-s -w" -o "$out.tmp/flux-apply" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# Argo CD's Lua runtime behind a small command of ours, to test the health check the chart ships.
build_lua_health() {
  local recipe out
  recipe=$(sha256sum "$here/lua-health/main.go" | cut -c1-12)
  out="$cache/bin/lua-health-$GOPHER_LUA_VERSION-$recipe"
  [ -x "$out/lua-health" ] && return 0
  log "lua-health (github.com/yuin/gopher-lua $GOPHER_LUA_VERSION)"
  local dir="$cache/src/lua-health-$GOPHER_LUA_VERSION"
  wrapper "$dir" github.com/yuin/gopher-lua "$GOPHER_LUA_VERSION"
  cp "$here/lua-health/main.go" "$dir/main.go"
  (cd "$dir" && go mod edit -require="sigs.k8s.io/yaml@$SIGS_YAML_VERSION" && go mod tidy >/dev/null \
    && mkdir -p "$out.tmp" && go build -ldflags "-s -w" -o "$out.tmp/lua-health" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
}

fetch_istio_crds() {
  local out="$cache/istio-api-$ISTIO_API_VERSION"
  [ -f "$out/crds.yaml" ] && return 0
  log "istio CRDs $ISTIO_API_VERSION"
  local dir
  dir=$(module_dir "istio.io/api@$ISTIO_API_VERSION")
  mkdir -p "$out" && cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$out/crds.yaml" && chmod u+w "$out/crds.yaml"
}

# The Gateway API's standard channel (HTTPRoute, Gateway, …), from the sigs.k8s.io/gateway-api module.
fetch_gateway_api_crds() {
  local out="$cache/gateway-api-$GATEWAY_API_VERSION"
  [ -f "$out/crds.yaml" ] && return 0
  log "Gateway API CRDs $GATEWAY_API_VERSION"
  local dir
  dir=$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
  mkdir -p "$out.tmp"
  # The CRDs only: the channel's safe-upgrades ValidatingAdmissionPolicy is a cluster operator's choice.
  for f in "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
    case $f in *_vap_*) continue ;; esac
    cat "$f"; echo '---'
  done > "$out.tmp/crds.yaml"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# Istio's own CLI, to let Istio's analyzers judge every routing object weir writes (issue 15).
build_istioctl() {
  local out="$cache/bin/istioctl-$ISTIO_VERSION"
  [ -x "$out/istioctl" ] && return 0
  log "istioctl $ISTIO_VERSION"
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" go install -ldflags "-s -w" "istio.io/istio/istioctl/cmd/istioctl@$ISTIO_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# istiod, the mesh simulator's xDS source (issue 18), and the control plane's ConfigMaps from
# Istio's own chart (mesh config; the gateway template its Gateway API deployment controller renders).
build_istiod() {
  local out="$cache/bin/istiod-$ISTIO_VERSION"
  [ -x "$out/pilot-discovery" ] && [ -f "$out/control-plane.yaml" ] && return 0
  log "istiod $ISTIO_VERSION"
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" go install -ldflags "-s -w" "istio.io/istio/pilot/cmd/pilot-discovery@$ISTIO_VERSION"
  local dir chart
  dir=$(module_dir "istio.io/istio@$ISTIO_VERSION")
  chart="$out.tmp/istio-discovery"
  cp -r "$dir/manifests/charts/istio-control/istio-discovery" "$chart" && chmod -R u+w "$chart"
  # Only the ConfigMaps: istiod itself runs out of cluster, from the cluster scripts.
  "$cache/bin/helm-$HELM_VERSION/helm" template istiod "$chart" -n istio-system \
    | awk 'BEGIN{RS="\n---\n"; ORS="\n---\n"} /(^|\n)kind: ConfigMap\n/' > "$out.tmp/control-plane.yaml"
  grep -q 'name: istio-sidecar-injector' "$out.tmp/control-plane.yaml"
  rm -rf "$chart" "$out" && mv "$out.tmp" "$out"
}

# The mesh simulator's xDS client: a small command of ours over Envoy's Go API.
build_xds_view() {
  local recipe out
  recipe=$(sha256sum "$here/xds-view/main.go" | cut -c1-12)
  out="$cache/bin/xds-view-$GO_CONTROL_PLANE_VERSION-$recipe"
  [ -x "$out/xds-view" ] && return 0
  log "xds-view (envoyproxy/go-control-plane $GO_CONTROL_PLANE_VERSION)"
  local dir="$cache/src/xds-view-$GO_CONTROL_PLANE_VERSION"
  wrapper "$dir" github.com/envoyproxy/go-control-plane/envoy "$GO_CONTROL_PLANE_VERSION"
  cp "$here/xds-view/main.go" "$dir/main.go"
  (cd "$dir" && go mod edit -require="google.golang.org/grpc@$GRPC_VERSION" && GOFLAGS=-mod=mod go mod tidy >/dev/null \
    && mkdir -p "$out.tmp" && go build -ldflags "-s -w" -o "$out.tmp/xds-view" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
}

parts=${*:-etcd kwok istio gateway-api kubernetes helm flux istioctl istiod xds-view lua-health}
for part in $parts; do
  case $part in
    kubernetes) (build_kubernetes) ;;
    etcd) (build_etcd) ;;
    kwok) (build_kwok) ;;
    helm) (build_helm) ;;
    istio) (fetch_istio_crds) ;;
    gateway-api) (fetch_gateway_api_crds) ;;
    flux) (build_flux_apply) ;;
    istioctl) (build_istioctl) ;;
    istiod) (build_helm && build_istiod) ;;
    xds-view) (build_xds_view) ;;
    lua-health) (build_lua_health) ;;
    *) echo "unknown part: $part" >&2; exit 2 ;;
  esac
done
log "done: $cache/bin"
