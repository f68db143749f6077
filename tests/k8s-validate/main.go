// Command k8s-validate checks exported ConfigMaps and Secrets the way the Kubernetes API server
// would, with Kubernetes' own Go types and validation functions, and prints what they hold.
//
// Usage: k8s-validate [FILE...] (no FILE: reads one object from stdin), or
// k8s-validate --manifests FILE... for whole deployments (see manifests.go).
//
// For each file: decodes the YAML with sigs.k8s.io/yaml.UnmarshalStrict (go-yaml v2, YAML 1.1,
// as kubectl does; unknown fields are errors) into a corev1.ConfigMap or corev1.Secret picked by
// `kind`, checks `apiVersion: v1`, then applies the rules of
// k8s.io/kubernetes/pkg/apis/core/validation.ValidateConfigMap and ValidateSecret, rebuilt
// from apimachinery's functions (k8s.io/kubernetes itself is not importable as a library):
//
//   - metadata: apimachinery's ValidateObjectMeta with NameIsDNSSubdomain (the name passes
//     IsDNS1123Subdomain, and is required; annotation keys are qualified names, annotations total at most
//     256 KiB; labels valid), plus core's check that finalizers without a `/` are standard
//     ones. The namespace is required by the API server, and kubectl fills it from the
//     context when the file has none, so a missing namespace is taken as `default`;
//   - every data (and binaryData) key passes IsConfigMapKey; a ConfigMap key is not in both;
//   - the values (decoded, for a Secret) total at most corev1.MaxSecretSize (1 MiB; the API
//     server applies the same limit to ConfigMaps);
//   - a Secret's type-specific required keys (none for Opaque).
//
// On success it prints one JSON line per file on stdout:
// {"kind":…,"name":…,"annotations":{…},"data":{key: value}}, a Secret's values decoded to
// strings. Any violation is printed on stderr and the exit status is 1.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// What kubectl puts in metadata.namespace when the file names none and the context sets none.
const defaultNamespace = "default"

// The finalizers core's ValidateObjectMeta accepts without a `/` (pkg/apis/core/helper).
var standardFinalizers = map[string]bool{
	string(corev1.FinalizerKubernetes): true,
	metav1.FinalizerOrphanDependents:   true,
	metav1.FinalizerDeleteDependents:   true,
}

// The decoded object, as printed on stdout.
type summary struct {
	Kind        string            `json:"kind"`
	Name        string            `json:"name"`
	Annotations map[string]string `json:"annotations"`
	Data        map[string]string `json:"data"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--manifests" {
		runManifests(os.Args[2:])
		return
	}
	inputs := os.Args[1:]
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	failed := false
	out := json.NewEncoder(os.Stdout)
	for _, input := range inputs {
		result, errs := check(input)
		if len(errs) > 0 {
			failed = true
			for _, err := range errs {
				fmt.Fprintf(os.Stderr, "%s: %s\n", input, err)
			}
			continue
		}
		if err := out.Encode(result); err != nil {
			fmt.Fprintf(os.Stderr, "%s: cannot write the result: %s\n", input, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func read(input string) ([]byte, error) {
	if input == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(input)
}

// check decodes and validates one file; the summary, or every violation found.
func check(input string) (*summary, []string) {
	text, err := read(input)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var types metav1.TypeMeta
	if err := yaml.Unmarshal(text, &types); err != nil {
		return nil, []string{fmt.Sprintf("not a YAML object: %s", err)}
	}
	var problems []string
	if types.APIVersion != "v1" {
		problems = append(problems, fmt.Sprintf("apiVersion is %q, not \"v1\"", types.APIVersion))
	}
	switch types.Kind {
	case "ConfigMap":
		var object corev1.ConfigMap
		if err := yaml.UnmarshalStrict(text, &object); err != nil {
			return nil, append(problems, fmt.Sprintf("strict decoding as a ConfigMap: %s", err))
		}
		problems = append(problems, errorStrings(validateConfigMap(&object))...)
		if len(problems) > 0 {
			return nil, problems
		}
		return &summary{
			Kind:        types.Kind,
			Name:        object.Name,
			Annotations: nonNil(object.Annotations),
			Data:        nonNil(object.Data),
		}, nil
	case "Secret":
		var object corev1.Secret
		if err := yaml.UnmarshalStrict(text, &object); err != nil {
			return nil, append(problems, fmt.Sprintf("strict decoding as a Secret: %s", err))
		}
		problems = append(problems, errorStrings(validateSecret(&object))...)
		if len(problems) > 0 {
			return nil, problems
		}
		data := make(map[string]string, len(object.Data))
		for key, value := range object.Data {
			data[key] = string(value)
		}
		return &summary{
			Kind:        types.Kind,
			Name:        object.Name,
			Annotations: nonNil(object.Annotations),
			Data:        data,
		}, nil
	default:
		return nil, append(problems, fmt.Sprintf("kind is %q, not ConfigMap or Secret", types.Kind))
	}
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func errorStrings(errs field.ErrorList) []string {
	out := make([]string, 0, len(errs))
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

// validateObjectMeta is core's ValidateObjectMeta: apimachinery's, plus finalizer names.
func validateObjectMeta(meta *metav1.ObjectMeta, fldPath *field.Path) field.ErrorList {
	if meta.Namespace == "" {
		meta.Namespace = defaultNamespace
	}
	allErrs := apimachineryvalidation.ValidateObjectMeta(meta, true, apimachineryvalidation.NameIsDNSSubdomain, fldPath)
	for i, finalizer := range meta.Finalizers {
		if !strings.Contains(finalizer, "/") && !standardFinalizers[finalizer] {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("finalizers").Index(i), finalizer, "name is neither a standard finalizer name nor is it fully qualified"))
		}
	}
	return allErrs
}

// validateConfigMap is core's ValidateConfigMap on the v1 type.
func validateConfigMap(cfg *corev1.ConfigMap) field.ErrorList {
	allErrs := validateObjectMeta(&cfg.ObjectMeta, field.NewPath("metadata"))
	totalSize := 0
	for key, value := range cfg.Data {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(field.NewPath("data").Key(key), key, msg))
		}
		if _, isValue := cfg.BinaryData[key]; isValue {
			allErrs = append(allErrs, field.Invalid(field.NewPath("data").Key(key), key, "duplicate of key present in binaryData"))
		}
		totalSize += len(value)
	}
	for key, value := range cfg.BinaryData {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(field.NewPath("binaryData").Key(key), key, msg))
		}
		totalSize += len(value)
	}
	if totalSize > corev1.MaxSecretSize {
		allErrs = append(allErrs, field.TooLong(field.NewPath(""), "", corev1.MaxSecretSize))
	}
	return allErrs
}

// validateSecret is core's ValidateSecret on the v1 type.
func validateSecret(secret *corev1.Secret) field.ErrorList {
	allErrs := validateObjectMeta(&secret.ObjectMeta, field.NewPath("metadata"))
	dataPath := field.NewPath("data")
	totalSize := 0
	for key, value := range secret.Data {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(dataPath.Key(key), key, msg))
		}
		totalSize += len(value)
	}
	if totalSize > corev1.MaxSecretSize {
		allErrs = append(allErrs, field.TooLong(dataPath, "", corev1.MaxSecretSize))
	}
	required := func(key string) {
		if _, exists := secret.Data[key]; !exists {
			allErrs = append(allErrs, field.Required(dataPath.Key(key), ""))
		}
	}
	isJSONObject := func(key string) {
		var object map[string]interface{}
		if err := json.Unmarshal(secret.Data[key], &object); err != nil {
			allErrs = append(allErrs, field.Invalid(dataPath.Key(key), "<secret contents redacted>", err.Error()))
		}
	}
	switch secret.Type {
	case corev1.SecretTypeOpaque, "":
	case corev1.SecretTypeServiceAccountToken:
		if secret.Annotations[corev1.ServiceAccountNameKey] == "" {
			allErrs = append(allErrs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		required(corev1.DockerConfigKey)
		if _, exists := secret.Data[corev1.DockerConfigKey]; exists {
			isJSONObject(corev1.DockerConfigKey)
		}
	case corev1.SecretTypeDockerConfigJson:
		required(corev1.DockerConfigJsonKey)
		if _, exists := secret.Data[corev1.DockerConfigJsonKey]; exists {
			isJSONObject(corev1.DockerConfigJsonKey)
		}
	case corev1.SecretTypeBasicAuth:
		_, username := secret.Data[corev1.BasicAuthUsernameKey]
		_, password := secret.Data[corev1.BasicAuthPasswordKey]
		if !username && !password {
			required(corev1.BasicAuthUsernameKey)
			required(corev1.BasicAuthPasswordKey)
		}
	case corev1.SecretTypeSSHAuth:
		if len(secret.Data[corev1.SSHAuthPrivateKey]) == 0 {
			allErrs = append(allErrs, field.Required(dataPath.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeTLS:
		required(corev1.TLSCertKey)
		required(corev1.TLSPrivateKeyKey)
	}
	return allErrs
}
