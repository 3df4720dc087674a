// Command xds-view is the mesh simulator's Envoy proxies, minus Envoy: it connects to istiod over
// ADS (plaintext gRPC) as the mesh client's sidecar and as each gateway's proxy, follows
// the clusters, listeners, routes and endpoints istiod pushes, acknowledges each push as Envoy
// does, and writes one JSON line per proxy whenever what that proxy holds changed. It decides no
// route: the simulator routes by what it prints (test/mesh/envoy.ts).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	typeHCM      = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

// A proxy istiod configures: its node identity and the labels gateways select it by.
type proxy struct {
	entry     string // "mesh", or "router:<namespace>/<workload>" for a gateway
	id        string
	namespace string
	labels    map[string]string
}

// What one proxy holds, in the simulator's terms (see test/mesh/envoy.ts for the reader).
type view struct {
	Entry     string                `json:"entry"`
	Routes    []routeConfig         `json:"routes"`
	Clusters  []string              `json:"clusters"`
	Endpoints map[string][]endpoint `json:"endpoints"`
	// When istiod's last push reached this proxy (ms since the epoch).
	PushedAt int64 `json:"pushedAt"`
	// The proxy is no more (its Gateway was deleted).
	Gone bool `json:"gone,omitempty"`
}

type routeConfig struct {
	Name         string        `json:"name"`
	VirtualHosts []virtualHost `json:"virtualHosts"`
}

type virtualHost struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Routes  []route  `json:"routes"`
}

type route struct {
	Name    string         `json:"name,omitempty"`
	Match   routeMatch     `json:"match"`
	Cluster string         `json:"cluster,omitempty"`
	Weights []clusterShare `json:"weightedClusters,omitempty"`
	Mirrors []mirror       `json:"mirrors,omitempty"`
	// A route that answers itself (a direct response or a redirect), with its status.
	DirectStatus uint32 `json:"directStatus,omitempty"`
}

type routeMatch struct {
	Prefix          *string         `json:"prefix,omitempty"`
	Path            *string         `json:"path,omitempty"`
	Regex           *string         `json:"regex,omitempty"`
	SeparatedPrefix *string         `json:"pathSeparatedPrefix,omitempty"`
	Headers         []headerMatcher `json:"headers,omitempty"`
}

type stringMatch struct {
	Exact      *string `json:"exact,omitempty"`
	Prefix     *string `json:"prefix,omitempty"`
	Suffix     *string `json:"suffix,omitempty"`
	Contains   *string `json:"contains,omitempty"`
	Regex      *string `json:"regex,omitempty"`
	IgnoreCase bool    `json:"ignoreCase,omitempty"`
}

type headerMatcher struct {
	Name    string       `json:"name"`
	String  *stringMatch `json:"string,omitempty"`
	Present *bool        `json:"present,omitempty"`
	Invert  bool         `json:"invert,omitempty"`
}

type clusterShare struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
}

type mirror struct {
	Cluster string  `json:"cluster"`
	Percent float64 `json:"percent"`
}

type endpoint struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	Healthy bool   `json:"healthy"`
}

func str(s string) *string { return &s }

func toStringMatch(m *matcherv3.StringMatcher) *stringMatch {
	if m == nil {
		return nil
	}
	out := &stringMatch{IgnoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Exact = str(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		out.Prefix = str(p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		out.Suffix = str(p.Suffix)
	case *matcherv3.StringMatcher_Contains:
		out.Contains = str(p.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		out.Regex = str(p.SafeRegex.GetRegex())
	}
	return out
}

func toMatch(m *routev3.RouteMatch) routeMatch {
	out := routeMatch{}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.Prefix = str(p.Prefix)
	case *routev3.RouteMatch_Path:
		out.Path = str(p.Path)
	case *routev3.RouteMatch_SafeRegex:
		out.Regex = str(p.SafeRegex.GetRegex())
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.SeparatedPrefix = str(p.PathSeparatedPrefix)
	}
	for _, h := range m.GetHeaders() {
		hm := headerMatcher{Name: strings.ToLower(h.GetName()), Invert: h.GetInvertMatch()}
		switch p := h.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_StringMatch:
			hm.String = toStringMatch(p.StringMatch)
		case *routev3.HeaderMatcher_PresentMatch:
			hm.Present = &p.PresentMatch
		case *routev3.HeaderMatcher_ExactMatch:
			hm.String = &stringMatch{Exact: str(p.ExactMatch)}
		case *routev3.HeaderMatcher_PrefixMatch:
			hm.String = &stringMatch{Prefix: str(p.PrefixMatch)}
		case *routev3.HeaderMatcher_SafeRegexMatch:
			hm.String = &stringMatch{Regex: str(p.SafeRegexMatch.GetRegex())}
		}
		out.Headers = append(out.Headers, hm)
	}
	return out
}

func percent(f *typev3.FractionalPercent) float64 {
	if f == nil {
		return 100
	}
	den := 100.0
	switch f.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		den = 10000
	case typev3.FractionalPercent_MILLION:
		den = 1000000
	}
	return 100 * float64(f.GetNumerator()) / den
}

func toRoute(r *routev3.Route) route {
	out := route{Name: r.GetName(), Match: toMatch(r.GetMatch())}
	if d := r.GetDirectResponse(); d != nil {
		out.DirectStatus = d.GetStatus()
	}
	if r.GetRedirect() != nil {
		out.DirectStatus = 301
	}
	a := r.GetRoute()
	if a == nil {
		return out
	}
	out.Cluster = a.GetCluster()
	for _, c := range a.GetWeightedClusters().GetClusters() {
		out.Weights = append(out.Weights, clusterShare{Name: c.GetName(), Weight: c.GetWeight().GetValue()})
	}
	for _, m := range a.GetRequestMirrorPolicies() {
		out.Mirrors = append(out.Mirrors, mirror{Cluster: m.GetCluster(), Percent: percent(m.GetRuntimeFraction().GetDefaultValue())})
	}
	return out
}

func toRouteConfig(rc *routev3.RouteConfiguration) routeConfig {
	out := routeConfig{Name: rc.GetName()}
	for _, vh := range rc.GetVirtualHosts() {
		v := virtualHost{Name: vh.GetName(), Domains: vh.GetDomains()}
		for _, r := range vh.GetRoutes() {
			v.Routes = append(v.Routes, toRoute(r))
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out
}

// The route configurations a listener's HTTP connection managers name (RDS).
func routeNames(l *listenerv3.Listener) []string {
	var names []string
	chains := append([]*listenerv3.FilterChain{}, l.GetFilterChains()...)
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, chain := range chains {
		for _, f := range chain.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil || tc.GetTypeUrl() != typeHCM {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := proto.Unmarshal(tc.GetValue(), hcm); err != nil {
				continue
			}
			if name := hcm.GetRds().GetRouteConfigName(); name != "" {
				names = append(names, name)
			}
		}
	}
	return names
}

// The state of one proxy's ADS stream: the resources held, and what to ask for next.
type state struct {
	clusters  map[string]*clusterv3.Cluster
	listeners map[string]*listenerv3.Listener
	routes    map[string]*routev3.RouteConfiguration
	endpoints map[string]*endpointv3.ClusterLoadAssignment
	// Per type: the names subscribed (EDS, RDS), the last version and nonce acknowledged.
	names   map[string][]string
	version map[string]string
	nonce   map[string]string
}

func newState() *state {
	return &state{
		clusters:  map[string]*clusterv3.Cluster{},
		listeners: map[string]*listenerv3.Listener{},
		routes:    map[string]*routev3.RouteConfiguration{},
		endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
		names:     map[string][]string{},
		version:   map[string]string{},
		nonce:     map[string]string{},
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// The clusters whose endpoints come by EDS, by their EDS name.
func (s *state) edsNames() []string {
	var names []string
	for _, c := range s.clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func (s *state) rdsNames() []string {
	set := map[string]bool{}
	for _, l := range s.listeners {
		for _, n := range routeNames(l) {
			set[n] = true
		}
	}
	return sortedKeys(set)
}

func (s *state) view(entry string) view {
	v := view{Entry: entry, Endpoints: map[string][]endpoint{}, PushedAt: time.Now().UnixMilli()}
	for _, name := range sortedKeys(s.routes) {
		v.Routes = append(v.Routes, toRouteConfig(s.routes[name]))
	}
	v.Clusters = sortedKeys(s.clusters)
	for name, cla := range s.endpoints {
		eps := []endpoint{}
		for _, locality := range cla.GetEndpoints() {
			for _, lb := range locality.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if sa == nil {
					continue
				}
				h := lb.GetHealthStatus()
				eps = append(eps, endpoint{
					Address: sa.GetAddress(),
					Port:    sa.GetPortValue(),
					Healthy: h == corev3.HealthStatus_UNKNOWN || h == corev3.HealthStatus_HEALTHY,
				})
			}
		}
		v.Endpoints[name] = eps
	}
	return v
}

// prune forgets what is no longer subscribed.
func prune[V any](held map[string]V, names []string) {
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	for n := range held {
		if !keep[n] {
			delete(held, n)
		}
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(v view) {
	out.Lock()
	defer out.Unlock()
	if err := out.enc.Encode(v); err != nil {
		log.Fatalf("stdout: %v", err)
	}
}

func node(p proxy) (*corev3.Node, error) {
	labels := map[string]any{}
	for k, v := range p.labels {
		labels[k] = v
	}
	meta, err := structpb.NewStruct(map[string]any{
		"ISTIO_VERSION":     "1.30.0",
		"CLUSTER_ID":        "Kubernetes",
		"NAMESPACE":         p.namespace,
		"LABELS":            labels,
		"INTERCEPTION_MODE": "REDIRECT",
		"SERVICE_ACCOUNT":   "default",
		"NAME":              strings.Split(strings.Split(p.id, "~")[2], ".")[0],
	})
	if err != nil {
		return nil, err
	}
	return &corev3.Node{Id: p.id, Cluster: strings.Split(p.id, "~")[2], Metadata: meta}, nil
}

// follow runs one ADS stream to its end: subscribe to clusters and listeners, then to the
// endpoints and routes they name, acknowledging every response.
func follow(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient, p proxy) error {
	n, err := node(p)
	if err != nil {
		return err
	}
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	s := newState()
	ask := func(typeURL string, names []string) error {
		return stream.Send(&discoveryv3.DiscoveryRequest{
			Node: n, TypeUrl: typeURL, ResourceNames: names,
			VersionInfo: s.version[typeURL], ResponseNonce: s.nonce[typeURL],
		})
	}
	if err := ask(typeCluster, nil); err != nil {
		return err
	}
	if err := ask(typeListener, nil); err != nil {
		return err
	}
	for {
		res, err := stream.Recv()
		if err != nil {
			return err
		}
		t := res.GetTypeUrl()
		// Clusters and listeners come whole in every response; routes and endpoints may come only
		// for the names that changed (the xDS protocol's rule for non-wildcard types): keep the rest.
		switch t {
		case typeCluster:
			s.clusters = map[string]*clusterv3.Cluster{}
		case typeListener:
			s.listeners = map[string]*listenerv3.Listener{}
		}
		for _, any := range res.GetResources() {
			switch t {
			case typeCluster:
				c := &clusterv3.Cluster{}
				if err := any.UnmarshalTo(c); err == nil {
					s.clusters[c.GetName()] = c
				}
			case typeListener:
				l := &listenerv3.Listener{}
				if err := any.UnmarshalTo(l); err == nil {
					s.listeners[l.GetName()] = l
				}
			case typeRoute:
				r := &routev3.RouteConfiguration{}
				if err := any.UnmarshalTo(r); err == nil {
					s.routes[r.GetName()] = r
				}
			case typeEndpoint:
				e := &endpointv3.ClusterLoadAssignment{}
				if err := any.UnmarshalTo(e); err == nil {
					s.endpoints[e.GetClusterName()] = e
				}
			}
		}
		s.version[t], s.nonce[t] = res.GetVersionInfo(), res.GetNonce()
		// Acknowledge, keeping the subscription; then widen EDS and RDS to what is named now.
		if err := ask(t, s.names[t]); err != nil {
			return err
		}
		if t == typeCluster {
			if names := s.edsNames(); !equal(names, s.names[typeEndpoint]) {
				s.names[typeEndpoint] = names
				prune(s.endpoints, names)
				if err := ask(typeEndpoint, names); err != nil {
					return err
				}
			}
		}
		if t == typeListener {
			if names := s.rdsNames(); !equal(names, s.names[typeRoute]) {
				s.names[typeRoute] = names
				prune(s.routes, names)
				if err := ask(typeRoute, names); err != nil {
					return err
				}
			}
		}
		emit(s.view(p.entry))
	}
}

// The gateway proxies to follow, as the simulator writes them on stdin: {"routers":[…]}, each
// one a gateway workload's pod (its address in the node ID, its labels for Gateway selectors).
type routersLine struct {
	Routers []struct {
		Key       string            `json:"key"`
		ID        string            `json:"id"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"routers"`
}

// run follows one proxy until ctx ends; a stream that ends (istiod restarted) is opened again, as Envoy would.
func run(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient, p proxy) {
	for ctx.Err() == nil {
		err := follow(ctx, client, p)
		if ctx.Err() != nil {
			// After the stream's last view: the proxy is gone with its Gateway.
			emit(view{Entry: p.entry, Gone: true, Endpoints: map[string][]endpoint{}})
			return
		}
		log.Printf("%s: stream ended: %v; reconnecting", p.entry, err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func main() {
	addr := flag.String("istiod", "127.0.0.1:15010", "istiod's plaintext xDS address")
	meshNamespace := flag.String("mesh-namespace", "weir-mesh", "the mesh client's namespace")
	flag.Parse()
	log.SetPrefix("xds-view: ")
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("dial %s: %v", *addr, err)
	}
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	ctx := context.Background()
	go run(ctx, client, proxy{
		entry: "mesh", namespace: *meshNamespace, labels: map[string]string{"app": "mesh-client"},
		id: fmt.Sprintf("sidecar~10.255.0.1~mesh-client.%s~%s.svc.cluster.local", *meshNamespace, *meshNamespace),
	})
	// One proxy per gateway workload, started and stopped as the simulator's list changes.
	running := map[string]context.CancelFunc{}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		var line routersLine
		if err := json.Unmarshal(in.Bytes(), &line); err != nil {
			log.Printf("stdin: %v", err)
			continue
		}
		want := map[string]bool{}
		for _, r := range line.Routers {
			key := r.Key + "|" + r.ID
			want[key] = true
			if _, ok := running[key]; ok {
				continue
			}
			rctx, cancel := context.WithCancel(ctx)
			running[key] = cancel
			go run(rctx, client, proxy{entry: "router:" + r.Key, id: r.ID, namespace: r.Namespace, labels: r.Labels})
		}
		for key, cancel := range running {
			if !want[key] {
				cancel()
				delete(running, key)
			}
		}
	}
	// The simulator is gone (stdin closed): so are its proxies.
}
