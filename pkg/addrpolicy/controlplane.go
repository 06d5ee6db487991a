package addrpolicy

import (
	"net"
	"net/netip"
	"net/url"
	"strings"

	"sigs.k8s.io/yaml"
)

// Where a cluster writes down its API server's address, besides the
// endpoints of default/kubernetes. A load balancer or keepalived VIP in
// front of several API servers shows up only here.
const (
	// ClusterInfoNamespace/ClusterInfoName hold the kubeconfig that
	// kubeadm publishes for joining nodes, under the key "kubeconfig".
	ClusterInfoNamespace = "kube-public"
	ClusterInfoName      = "cluster-info"
	// KubeadmConfigNamespace/KubeadmConfigName hold kubeadm's
	// ClusterConfiguration, under the key "ClusterConfiguration".
	KubeadmConfigNamespace = "kube-system"
	KubeadmConfigName      = "kubeadm-config"
)

// ControlPlaneFromClusterInfo reads the server addresses of the kubeconfig
// in kube-public/cluster-info. A server given by name, not address, is left
// out: the policy resolves nothing.
func ControlPlaneFromClusterInfo(data map[string]string) []ControlPlane {
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `json:"server"`
			} `json:"cluster"`
		} `json:"clusters"`
	}
	if err := yaml.Unmarshal([]byte(data["kubeconfig"]), &kc); err != nil {
		return nil
	}
	var out []ControlPlane
	for _, c := range kc.Clusters {
		u, err := url.Parse(c.Cluster.Server)
		if err != nil {
			continue
		}
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
			out = append(out, ControlPlane{IP: ip.Unmap(), Source: "server of the kubeconfig in kube-public/cluster-info"})
		}
	}
	return out
}

// KubeadmFacts are what kubeadm's ClusterConfiguration says about the
// cluster's addresses.
type KubeadmFacts struct {
	ControlPlane []ControlPlane
	ServiceCIDRs []netip.Prefix
	PodCIDRs     []netip.Prefix
}

// FromKubeadmConfig reads kube-system/kubeadm-config: the
// controlPlaneEndpoint, and the Service and pod subnets.
func FromKubeadmConfig(data map[string]string) KubeadmFacts {
	var cc struct {
		ControlPlaneEndpoint string `json:"controlPlaneEndpoint"`
		Networking           struct {
			ServiceSubnet string `json:"serviceSubnet"`
			PodSubnet     string `json:"podSubnet"`
		} `json:"networking"`
	}
	var out KubeadmFacts
	if err := yaml.Unmarshal([]byte(data["ClusterConfiguration"]), &cc); err != nil {
		return out
	}
	host := cc.ControlPlaneEndpoint
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		out.ControlPlane = append(out.ControlPlane, ControlPlane{IP: ip.Unmap(), Source: "controlPlaneEndpoint of kubeadm's ClusterConfiguration"})
	}
	out.ServiceCIDRs = prefixes(cc.Networking.ServiceSubnet)
	out.PodCIDRs = prefixes(cc.Networking.PodSubnet)
	return out
}

// prefixes reads a comma-separated list of CIDRs, as kubeadm writes a
// dual-stack subnet.
func prefixes(s string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(f)); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}
