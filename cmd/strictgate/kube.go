package main

import (
	"errors"
	"flag"
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeFlags select a cluster the way kubectl does: --kubeconfig, else $KUBECONFIG,
// else ~/.kube/config, else the in-cluster service account; --context picks a context.
type kubeFlags struct {
	kubeconfig, context string
}

func bindKubeFlags(fs *flag.FlagSet) *kubeFlags {
	k := &kubeFlags{}
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	fs.StringVar(&k.context, "context", "", "kubeconfig context to use (default: the current context)")
	return k
}

// set reports whether a cluster was asked for explicitly.
func (k *kubeFlags) set() bool { return k.kubeconfig != "" || k.context != "" }

func (k *kubeFlags) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
}

// errNoCluster: no kubeconfig anywhere and not in a pod.
var errNoCluster = errors.New("no cluster: pass --kubeconfig FILE, set $KUBECONFIG, or run inside a pod")

// restConfig resolves the cluster; the error says how to name one.
func (k *kubeFlags) restConfig() (*rest.Config, error) {
	cfg, err := k.clientConfig().ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) || errors.Is(err, clientcmd.ErrEmptyConfig) {
			return nil, errNoCluster
		}
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.UserAgent = "strictgate"
	return cfg, nil
}

// client returns a clientset and the context's namespace ("default" if it names none).
func (k *kubeFlags) client() (kubernetes.Interface, *rest.Config, string, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, nil, "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", fmt.Errorf("make client: %w", err)
	}
	ns, _, err := k.clientConfig().Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	return cs, cfg, ns, nil
}
