package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/setpoint/setpoint/sdk/go/internal/devserver"
)

// syncBuffer is the demo's output, written by exec's copier and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDemo runs the example as a user would — built, against a real `setpoint dev` — and checks
// it prints the README's line after a PUT.
func TestDemo(t *testing.T) {
	s := devserver.Start(t)
	s.Put("/myapp/database/host", "localhost")
	s.Put("/myapp/database/host", "db.internal")

	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	demo := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command(goTool, "build", "-o", demo, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	var out syncBuffer
	cmd := exec.Command(demo, "-address", s.Address(), "-cache", filepath.Join(t.TempDir(), "config-cache"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitForOutput := func(want string) {
		t.Helper()
		devserver.WaitUntil(t, 20*time.Second, "the demo prints "+want, func() bool {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("the demo exited (%v):\n%s", err, out.String())
			default:
			}
			return strings.Contains(out.String(), want)
		})
	}
	waitForOutput("database host: db.internal (v2)")
	waitForOutput("watching /myapp/database")

	s.Put("/myapp/database/host", "new-host.internal")
	waitForOutput("Config changed: /myapp/database/host = new-host.internal (v3)")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("the demo exited with %v after SIGTERM:\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the demo did not exit after SIGTERM:\n%s", out.String())
	}
	t.Logf("demo output:\n%s", out.String())
}
