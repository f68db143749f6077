// The --manifests mode: checks a whole deployment (the output of `kustomize build`, several
// YAML documents) the way the API server and the cluster would see it, and prints each object.
//
// Each document is decoded strictly (unknown fields are errors) into its k8s.io/api type picked
// by apiVersion and kind — a kind not listed below is an error, so nothing passes unchecked —
// and its metadata validated as for ConfigMaps. Then the objects are checked against each
// other, as a running cluster would find out only when pods fail:
//
//   - every workload's selector selects its own pod template, and its containers have an
//     image, liveness and readiness probes on ports they declare, memory requests and limits,
//     volume mounts of declared volumes, and run as non-root without privilege escalation;
//   - ConfigMaps and ServiceAccounts a pod refers to are in the stream (kustomize renames
//     generated ConfigMaps; a stale reference would leave pods pending); Secrets need not be
//     (they hold keys and certificates and are made apart) and are listed in the output;
//   - Services, NetworkPolicies and PodDisruptionBudgets select some workload's pods, and the
//     ports they name exist on those pods with the same protocol.
//
// On success it prints one JSON line per object: {"kind","namespace","name","object"}, the
// object as decoded, then {"kind":"ExternalSecrets","names":[…]}; violations go to stderr and
// the exit status is 1.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// One decoded object of the stream.
type object struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Object    any    `json:"object"`
}

// A workload's pod template, for the cross-object checks.
type workload struct {
	id        string
	namespace string
	labels    labels.Set
	template  *corev1.PodTemplateSpec
	claims    map[string]bool // a StatefulSet's volumeClaimTemplates
}

// The decoders by apiVersion/kind: each returns the typed object, its metadata, and whether
// it is namespaced.
var kinds = map[string]func([]byte) (any, *metav1.ObjectMeta, bool, error){
	"v1/Namespace": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o corev1.Namespace
		return &o, &o.ObjectMeta, false, yaml.UnmarshalStrict(b, &o)
	},
	"v1/ServiceAccount": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o corev1.ServiceAccount
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
	"v1/ConfigMap": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o corev1.ConfigMap
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
	"v1/Secret": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o corev1.Secret
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
	"v1/Service": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o corev1.Service
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
	"apps/v1/Deployment": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o appsv1.Deployment
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
	"apps/v1/DaemonSet": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o appsv1.DaemonSet
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
	"apps/v1/StatefulSet": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o appsv1.StatefulSet
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
	"policy/v1/PodDisruptionBudget": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o policyv1.PodDisruptionBudget
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
	"networking.k8s.io/v1/NetworkPolicy": func(b []byte) (any, *metav1.ObjectMeta, bool, error) {
		var o networkingv1.NetworkPolicy
		return &o, &o.ObjectMeta, true, yaml.UnmarshalStrict(b, &o)
	},
}

// documents splits a multi-document YAML stream, skipping empty documents.
func documents(r io.Reader) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// checkManifests runs the --manifests mode on one file; every violation found.
func checkManifests(input string) ([]object, []string, []string) {
	text, err := read(input)
	if err != nil {
		return nil, nil, []string{err.Error()}
	}
	docs, err := documents(bytes.NewReader(text))
	if err != nil {
		return nil, nil, []string{fmt.Sprintf("not a YAML stream: %s", err)}
	}
	var (
		problems  []string
		objects   []object
		workloads []workload
		services  []*corev1.Service
		policies  []*networkingv1.NetworkPolicy
		budgets   []*policyv1.PodDisruptionBudget
		present   = map[string]bool{} // "Kind/namespace/name"
	)
	for i, doc := range docs {
		var types metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &types); err != nil {
			problems = append(problems, fmt.Sprintf("document %d: not a YAML object: %s", i, err))
			continue
		}
		decode, known := kinds[types.APIVersion+"/"+types.Kind]
		if !known {
			problems = append(problems, fmt.Sprintf("document %d: %s %s is not a kind this check knows", i, types.APIVersion, types.Kind))
			continue
		}
		typed, meta, namespaced, err := decode(doc)
		if err != nil {
			problems = append(problems, fmt.Sprintf("document %d (%s): strict decoding: %s", i, types.Kind, err))
			continue
		}
		id := fmt.Sprintf("%s %s/%s", types.Kind, meta.Namespace, meta.Name)
		var errs field.ErrorList
		switch o := typed.(type) {
		case *corev1.ConfigMap:
			errs = validateConfigMap(o)
		case *corev1.Secret:
			errs = validateSecret(o)
		default:
			if namespaced && meta.Namespace == "" {
				errs = append(errs, field.Required(field.NewPath("metadata", "namespace"), "every namespaced object names its namespace (the overlay sets it)"))
			}
			nameCheck := apimachineryvalidation.NameIsDNSSubdomain
			if types.Kind == "Service" || types.Kind == "Namespace" {
				nameCheck = apimachineryvalidation.NameIsDNSLabel
			}
			errs = append(errs, apimachineryvalidation.ValidateObjectMeta(meta, namespaced, nameCheck, field.NewPath("metadata"))...)
		}
		for _, e := range errs {
			problems = append(problems, fmt.Sprintf("%s: %s", id, e))
		}
		present[types.Kind+"/"+meta.Namespace+"/"+meta.Name] = true
		switch o := typed.(type) {
		case *appsv1.Deployment:
			workloads = append(workloads, workload{id, meta.Namespace, o.Spec.Template.Labels, &o.Spec.Template, nil})
			problems = append(problems, checkSelector(id, o.Spec.Selector, o.Spec.Template.Labels)...)
		case *appsv1.DaemonSet:
			workloads = append(workloads, workload{id, meta.Namespace, o.Spec.Template.Labels, &o.Spec.Template, nil})
			problems = append(problems, checkSelector(id, o.Spec.Selector, o.Spec.Template.Labels)...)
		case *appsv1.StatefulSet:
			claims := map[string]bool{}
			for _, c := range o.Spec.VolumeClaimTemplates {
				claims[c.Name] = true
			}
			workloads = append(workloads, workload{id, meta.Namespace, o.Spec.Template.Labels, &o.Spec.Template, claims})
			problems = append(problems, checkSelector(id, o.Spec.Selector, o.Spec.Template.Labels)...)
		case *corev1.Service:
			services = append(services, o)
		case *networkingv1.NetworkPolicy:
			policies = append(policies, o)
		case *policyv1.PodDisruptionBudget:
			budgets = append(budgets, o)
		}
		objects = append(objects, object{types.Kind, meta.Namespace, meta.Name, typed})
	}
	secrets := map[string]bool{}
	for _, w := range workloads {
		problems = append(problems, checkPod(w, present, secrets)...)
	}
	for _, s := range services {
		id := "Service " + s.Namespace + "/" + s.Name
		selected := selectedBy(workloads, s.Namespace, labels.SelectorFromSet(s.Spec.Selector), len(s.Spec.Selector) > 0)
		if len(selected) == 0 {
			problems = append(problems, id+": its selector matches no workload's pods")
		}
		for _, port := range s.Spec.Ports {
			for _, w := range selected {
				if !hasPort(w.template, port.TargetPort, port.Protocol) {
					problems = append(problems, fmt.Sprintf("%s: port %q targets %s/%s, which %s does not declare", id, port.Name, port.TargetPort.String(), port.Protocol, w.id))
				}
			}
		}
	}
	for _, p := range policies {
		id := "NetworkPolicy " + p.Namespace + "/" + p.Name
		selected := matching(workloads, p.Namespace, &p.Spec.PodSelector)
		if len(selected) == 0 {
			problems = append(problems, id+": its podSelector matches no workload's pods")
		}
		for _, rule := range p.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.PodSelector != nil && peer.NamespaceSelector == nil && len(matching(workloads, p.Namespace, peer.PodSelector)) == 0 {
					problems = append(problems, id+": an ingress peer's podSelector matches no workload's pods")
				}
			}
			for _, port := range rule.Ports {
				protocol := corev1.ProtocolTCP
				if port.Protocol != nil {
					protocol = *port.Protocol
				}
				for _, w := range selected {
					if port.Port != nil && !hasPort(w.template, *port.Port, protocol) {
						problems = append(problems, fmt.Sprintf("%s: port %s/%s is not one %s declares", id, port.Port.String(), protocol, w.id))
					}
				}
			}
		}
	}
	for _, b := range budgets {
		if len(matching(workloads, b.Namespace, b.Spec.Selector)) == 0 {
			problems = append(problems, "PodDisruptionBudget "+b.Namespace+"/"+b.Name+": its selector matches no workload's pods")
		}
	}
	external := make([]string, 0, len(secrets))
	for name := range secrets {
		external = append(external, name)
	}
	sort.Strings(external)
	return objects, external, problems
}

func checkSelector(id string, selector *metav1.LabelSelector, podLabels map[string]string) []string {
	if selector == nil || (len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0) {
		return []string{id + ": no selector"}
	}
	parsed, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return []string{fmt.Sprintf("%s: selector: %s", id, err)}
	}
	if !parsed.Matches(labels.Set(podLabels)) {
		return []string{id + ": the selector does not select its own pod template"}
	}
	return nil
}

func matching(workloads []workload, namespace string, selector *metav1.LabelSelector) []workload {
	if selector == nil {
		return nil
	}
	parsed, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil
	}
	return selectedBy(workloads, namespace, parsed, true)
}

func selectedBy(workloads []workload, namespace string, selector labels.Selector, nonEmpty bool) []workload {
	if !nonEmpty {
		return nil
	}
	var out []workload
	for _, w := range workloads {
		if w.namespace != namespace {
			continue
		}
		if selector.Matches(w.labels) {
			out = append(out, w)
		}
	}
	return out
}

// hasPort: does some container of the template declare the port (by name or number)?
func hasPort(template *corev1.PodTemplateSpec, port intstr.IntOrString, protocol corev1.Protocol) bool {
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	for _, c := range template.Spec.Containers {
		for _, p := range c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if proto != protocol {
				continue
			}
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

// checkPod checks one workload's pod template; the Secrets it mounts are added to secrets.
func checkPod(w workload, present map[string]bool, secrets map[string]bool) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, w.id+": "+fmt.Sprintf(format, args...)) }
	namespace := w.namespace
	spec := &w.template.Spec
	if sa := spec.ServiceAccountName; sa != "" && !present["ServiceAccount/"+namespace+"/"+sa] {
		bad("serviceAccountName %q is not in the stream", sa)
	}
	podNonRoot := spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			bad("volume %q: %s", v.Name, msg)
		}
		volumes[v.Name] = true
		if v.Secret != nil {
			secrets[v.Secret.SecretName] = true
		}
		if v.ConfigMap != nil && !present["ConfigMap/"+namespace+"/"+v.ConfigMap.Name] {
			bad("volume %q: ConfigMap %q is not in the stream", v.Name, v.ConfigMap.Name)
		}
	}
	if len(spec.Containers) == 0 {
		bad("no containers")
	}
	for _, c := range spec.Containers {
		where := fmt.Sprintf("container %q", c.Name)
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			bad("%s: %s", where, msg)
		}
		if c.Image == "" {
			bad("%s: no image", where)
		}
		for _, p := range c.Ports {
			if p.Name != "" {
				for _, msg := range validation.IsValidPortName(p.Name) {
					bad("%s: port %q: %s", where, p.Name, msg)
				}
			}
		}
		for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			if probe == nil {
				bad("%s: no %s probe", where, name)
				continue
			}
			if probe.HTTPGet != nil && !hasPort(&corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}, probe.HTTPGet.Port, corev1.ProtocolTCP) {
				bad("%s: the %s probe's port %s is not declared", where, name, probe.HTTPGet.Port.String())
			}
		}
		if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
			bad("%s: no memory request", where)
		}
		if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
			bad("%s: no memory limit", where)
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("%s: allowPrivilegeEscalation is not false", where)
		}
		if !podNonRoot && (sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
			bad("%s: not required to run as non-root", where)
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] && !w.claims[m.Name] {
				bad("%s: mounts %q, which is no volume of the pod", where, m.Name)
			}
		}
		for _, from := range c.EnvFrom {
			if from.ConfigMapRef != nil && !present["ConfigMap/"+namespace+"/"+from.ConfigMapRef.Name] {
				bad("%s: envFrom ConfigMap %q is not in the stream", where, from.ConfigMapRef.Name)
			}
			if from.SecretRef != nil {
				secrets[from.SecretRef.Name] = true
			}
		}
		for _, env := range c.Env {
			if env.ValueFrom != nil && env.ValueFrom.ConfigMapKeyRef != nil && !present["ConfigMap/"+namespace+"/"+env.ValueFrom.ConfigMapKeyRef.Name] {
				bad("%s: env %s: ConfigMap %q is not in the stream", where, env.Name, env.ValueFrom.ConfigMapKeyRef.Name)
			}
			if env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil {
				secrets[env.ValueFrom.SecretKeyRef.Name] = true
			}
		}
	}
	return problems
}

// runManifests is main for --manifests FILE...
func runManifests(inputs []string) {
	failed := false
	out := json.NewEncoder(os.Stdout)
	for _, input := range inputs {
		objects, external, problems := checkManifests(input)
		if len(problems) > 0 {
			failed = true
			for _, p := range problems {
				fmt.Fprintf(os.Stderr, "%s: %s\n", input, p)
			}
			continue
		}
		for _, o := range objects {
			if err := out.Encode(o); err != nil {
				fmt.Fprintf(os.Stderr, "%s: cannot write the result: %s\n", input, err)
				failed = true
			}
		}
		if err := out.Encode(map[string]any{"kind": "ExternalSecrets", "names": external}); err != nil {
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
