package charts

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestAgentEventLogHostFile: hostFile off adds nothing; on, the agent gets the file
// flags and exactly the file's directory as a hostPath (not /var/log), read-write in the
// agent container only.
func TestAgentEventLogHostFile(t *testing.T) {
	agentDS := func(values map[string]any) *appsv1.DaemonSet {
		r := render(t, "sg", values)
		for _, o := range r.byKind("DaemonSet") {
			if strings.Contains(o.GetName(), "agent") {
				return one[appsv1.DaemonSet](r, "DaemonSet", o.GetName())
			}
		}
		t.Fatal("no agent DaemonSet")
		return nil
	}
	find := func(ds *appsv1.DaemonSet) (*corev1.Container, []corev1.Volume) {
		for i, c := range ds.Spec.Template.Spec.Containers {
			if slices.Contains(c.Args, "agent") {
				return &ds.Spec.Template.Spec.Containers[i], ds.Spec.Template.Spec.Volumes
			}
		}
		t.Fatal("no agent container")
		return nil, nil
	}
	c, vols := find(agentDS(nil))
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--event-log") {
			t.Errorf("default args carry %s", a)
		}
	}
	for _, v := range vols {
		if v.Name == "event-log" {
			t.Error("default renders the event-log volume")
		}
	}

	ds := agentDS(map[string]any{"agent": map[string]any{"policyEventLogs": map[string]any{"hostFile": map[string]any{
		"enabled": true, "path": "/var/log/sg/events.log", "maxSizeMB": 20, "maxBackups": 3}}}})
	c, vols = find(ds)
	for _, want := range []string{"--event-log-file=/var/log/sg/events.log", "--event-log-max-size-mb=20", "--event-log-max-backups=3"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("agent args %v lack %s", c.Args, want)
		}
	}
	var vol *corev1.Volume
	for i := range vols {
		if vols[i].Name == "event-log" {
			vol = &vols[i]
		}
	}
	if vol == nil || vol.HostPath == nil || vol.HostPath.Path != "/var/log/sg" || vol.HostPath.Type == nil || *vol.HostPath.Type != corev1.HostPathDirectoryOrCreate {
		t.Fatalf("event-log volume %+v: want hostPath /var/log/sg DirectoryOrCreate", vol)
	}
	mounts := 0
	for _, ctr := range append(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers...) {
		for _, m := range ctr.VolumeMounts {
			if m.Name != "event-log" {
				continue
			}
			mounts++
			if ctr.Name != c.Name || m.MountPath != "/var/log/sg" || m.SubPath != "" {
				t.Errorf("container %s mounts event-log at %s: want only the agent at /var/log/sg", ctr.Name, m.MountPath)
			}
		}
	}
	if mounts != 1 {
		t.Errorf("event-log mounted %d times, want once", mounts)
	}

	h := helm(t)
	for _, bad := range []map[string]any{{"path": "relative.log"}, {"path": "/file"}, {"maxSizeMB": 0}, {"maxBackups": 0}, {"size": 1}} {
		_, err := h.Template(context.Background(), "sg", testNamespace, map[string]any{"agent": map[string]any{"policyEventLogs": map[string]any{"hostFile": bad}}})
		if err == nil || !strings.Contains(err.Error(), "schema") {
			t.Errorf("hostFile %v: error %v, want a schema error", bad, err)
		}
	}
}
