#!/usr/bin/env bash
# Prepares the frr-k8s module MetalLB v0.16.2 builds against. MetalLB needs
# frr-k8s v0.0.27, which the module proxy does not serve; v0.0.26 lacks
# only the AS-path-prepend type of its BGP API, which the layer 2 mode the
# benchmark runs never uses. So v0.0.26 is copied to $1 with that type
# added, and go.mod replaces frr-k8s with the copy.
set -euo pipefail
dst=$1
version=v0.0.26
dir=$(cd / && GOFLAGS= go mod download -json "github.com/metallb/frr-k8s@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "frr-k8s $version: no module directory" >&2; exit 1; }
rm -rf "$dst"
mkdir -p "$(dirname "$dst")"
cp -r "$dir" "$dst"
chmod -R u+w "$dst"
types=$dst/api/v1beta1/frrconfiguration_types.go
grep -q '^type Advertise struct {$' "$types"
sed -i 's/^type Advertise struct {$/type Advertise struct {\n\tPrefixesWithAsPathPrepend []AsPathPrependPrefixes `json:"prefixesWithAsPathPrepend,omitempty"`/' "$types"
cat > "$dst/api/v1beta1/zz_aspathprepend.go" <<'GO'
package v1beta1

// AsPathPrependPrefixes is what MetalLB v0.16.2 expects of frr-k8s v0.0.27.
type AsPathPrependPrefixes struct {
	AsPathPrepend uint8    `json:"asPathPrepend"`
	Prefixes      []string `json:"prefixes,omitempty"`
}
GO
