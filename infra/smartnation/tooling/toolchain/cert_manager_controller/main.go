// Command cert-manager-controller runs cert-manager's own controllers against one cluster: the ones
// that issue Certificates through CA and self-signed Issuers and ClusterIssuers.
//
// The Go module proxy serves cert-manager's root module (github.com/cert-manager/cert-manager),
// which holds every controller and issuer, but not the module of cert-manager's controller binary:
// cmd/controller declares itself as github.com/cert-manager/cert-manager/controller-binary, a path
// no proxy can resolve. So smartnation builds this entry point of its own (recipes.py,
// _build_cert_manager) against the pinned root module. It wires the controllers the way a
// controller manager does: one ContextFactory, each controller built from it, then the shared
// informers started once every controller has asked for the ones it watches.
//
// Only what the local clusters need is compiled in: no ACME (its controllers and DNS providers are
// not linked at all), no Vault or Venafi, no ingress or Gateway shims, no webhook, no cainjector,
// no HTTP listener (two clusters share one host), and no leader election: `make clusters` runs one
// process per cluster and tracks it by PID.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	// The controllers: each registers itself with pkg/controller when imported.
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The issuer kinds the issuers and clusterissuers controllers can set up.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// controllers are the ones this binary runs, by the names cert-manager gives them.
var controllers = []string{
	issuers.ControllerName,
	clusterissuers.ControllerName,
	crapprover.ControllerName,
	crca.CRControllerName,
	crselfsigned.CRControllerName,
	trigger.ControllerName,
	issuing.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

func main() {
	flags := flag.NewFlagSet("cert-manager-controller", flag.ExitOnError)
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig of the cluster; its current context is used (required)")
	resourceNamespace := flags.String("cluster-resource-namespace", "cert-manager",
		"namespace of the Secrets that ClusterIssuers name (a CA issuer's key pair)")
	ownerRef := flags.Bool("enable-certificate-owner-ref", false,
		"make each Certificate the owner of its Secret, so deleting the Certificate deletes the Secret")
	workers := flags.Int("workers", 2, "concurrent workers per controller")
	showVersion := flags.Bool("version", false, "print the version and exit")
	klog.InitFlags(flags) // -v and klog's output flags
	_ = flags.Parse(os.Args[1:])

	if *showVersion {
		fmt.Printf("cert-manager-controller %s\n", util.AppVersion)
		return
	}
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "cert-manager-controller: --kubeconfig is required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")

	opts := controller.ContextOptions{
		Kubeconfig: *kubeconfig,
		// cert-manager's own defaults; client-side limits only apply when the API server has no
		// priority and fairness.
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: *resourceNamespace},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef: *ownerRef,
			// cert-manager's default: copy a Certificate's annotations to its requests, but not
			// those that tools write for themselves.
			CopiedAnnotationPrefixes: []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
		},
	}
	if err := run(ctx, opts, *workers); err != nil {
		klog.ErrorS(err, "cert-manager-controller stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

// run builds every controller, starts the shared informers, and blocks until ctx is done or a
// controller fails.
func run(ctx context.Context, opts controller.ContextOptions, workers int) error {
	log := logf.FromContext(ctx)
	known := controller.Known()
	names := append([]string(nil), controllers...)
	sort.Strings(names)
	for _, name := range names {
		if _, ok := known[name]; !ok {
			return fmt.Errorf("controller %q is not registered by the cert-manager packages linked in", name)
		}
	}

	factory, err := controller.NewContextFactory(ctx, opts)
	if err != nil {
		return fmt.Errorf("connecting to the cluster: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return err
	}

	group, groupCtx := errgroup.WithContext(ctx)
	for _, name := range names {
		loop, err := known[name](factory)
		if err != nil {
			return fmt.Errorf("building controller %s: %w", name, err)
		}
		group.Go(func() error {
			log.Info("starting controller", "controller", name)
			if err := loop.Run(workers, groupCtx); err != nil {
				return fmt.Errorf("controller %s: %w", name, err)
			}
			return nil
		})
	}
	log.Info("enabled controllers", "controllers", names, "clusterResourceNamespace", opts.ClusterResourceNamespace,
		"version", util.AppVersion)
	// Informers start after every controller asked for its own, as a factory starts only those.
	base.SharedInformerFactory.Start(groupCtx.Done())
	base.KubeSharedInformerFactory.Start(groupCtx.Done())

	err = group.Wait()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("control loops exited")
	return nil
}
