// Command flux-apply applies a folder of manifests once, the way Flux's kustomize-controller
// does: server-side apply through github.com/fluxcd/pkg/ssa, with its dry-run drift detection.
// It prints one JSON line per object: {"subject":"Kind/namespace/name","action":"unchanged"}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
	dir := flag.String("dir", "", "folder of YAML manifests")
	namespace := flag.String("namespace", "", "namespace for objects that name none")
	flag.Parse()
	if err := run(*kubeconfig, *dir, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "flux-apply:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, dir, namespace string) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	kube, err := client.New(config, client.Options{})
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	var objects []*unstructured.Unstructured
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		read, err := utils.ReadObjects(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		for _, o := range read {
			if o.GetNamespace() == "" && namespace != "" {
				o.SetNamespace(namespace)
			}
		}
		objects = append(objects, read...)
	}
	// The field manager and cleanup kustomize-controller uses.
	manager := ssa.NewResourceManager(kube, nil, ssa.Owner{Field: "kustomize-controller", Group: "kustomize.toolkit.fluxcd.io"})
	options := ssa.DefaultApplyOptions()
	options.Force = true
	options.Cleanup = ssa.ApplyCleanupOptions{
		Annotations: []string{"kubectl.kubernetes.io/last-applied-configuration"},
		FieldManagers: []ssa.FieldManager{
			{Name: "kubectl", OperationType: "Apply"},
			{Name: "kubectl-client-side-apply", OperationType: "Update"},
			{Name: "before-first-apply", OperationType: "Update"},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changes, err := manager.ApplyAll(ctx, objects, options)
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	for _, entry := range changes.Entries {
		if err := out.Encode(map[string]string{"subject": entry.Subject, "action": string(entry.Action)}); err != nil {
			return err
		}
	}
	return nil
}
