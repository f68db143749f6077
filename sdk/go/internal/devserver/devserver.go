// Package devserver is the SDK tests' harness: a real `setpoint dev` per test on a free
// loopback port, the REST calls that change configuration, and a wait-until helper. No mock of
// the server anywhere. It is internal: only this module's tests (the package's and the
// example's) use it.
package devserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Binary is SETPOINT_BIN, or the workspace's debug build. A missing binary fails the
// test: an SDK test that skips without its server proves nothing.
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("SETPOINT_BIN")
	if bin == "" {
		_, here, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(here), "..", "..", "..", "..", "target", "debug", "setpoint")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the setpoint binary is missing at %s (build it with `cargo build -p setpoint-cli` or set SETPOINT_BIN): %v", bin, err)
	}
	return bin
}

// FreePort finds a port free for both TCP (REST, gRPC) and UDP (replication), which
// `setpoint dev` binds alike.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// Server is one running (or stopped) `setpoint dev`.
type Server struct {
	t    testing.TB
	bin  string
	Port int
	// DataDir is the server's --data-dir.
	DataDir string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start starts `setpoint dev` and stops it (by its PID) when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), Port: FreePort(t), DataDir: t.TempDir()}
	s.logPath = filepath.Join(s.DataDir, "server.log")
	s.Start()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			if log, err := os.ReadFile(s.logPath); err == nil {
				t.Logf("setpoint dev log:\n%s", log)
			}
		}
	})
	return s
}

// Start (re)starts the server on its port and data dir and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command(s.bin, "dev", "--listen", s.Address(), "--data-dir", s.DataDir)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", s.bin, err)
	}
	log.Close()
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)
	// The writer answers first; its edge is ready once it holds the writer's snapshot (before
	// that it reports stale and serves sessions an empty revision 0).
	WaitUntil(s.t, 30*time.Second, "setpoint dev's edge answers /edge/healthz with stale false", func() bool {
		select {
		case <-s.exited:
			s.t.Fatalf("setpoint dev exited at start; see %s", s.logPath)
		default:
		}
		resp, err := http.Get(s.URL("/edge/healthz"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var health struct {
			Stale *bool `json:"stale"`
		}
		return resp.StatusCode == http.StatusOK &&
			json.NewDecoder(resp.Body).Decode(&health) == nil && health.Stale != nil && !*health.Stale
	})
}

// Stop kills the server by its PID and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Address is host:port, what NewClient takes.
func (s *Server) Address() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// URL is the HTTP URL of path p.
func (s *Server) URL(p string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.Port, p)
}

// Call sends a REST request and fails the test unless it answers 2xx; it returns the body.
func (s *Server) Call(method, path string, body any) []byte {
	s.t.Helper()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.URL(path), reader)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

// Put writes a value and returns the new version and revision.
func (s *Server) Put(path string, value any) (version uint64, revision int64) {
	s.t.Helper()
	var answer struct {
		Version  uint64 `json:"version"`
		Revision int64  `json:"revision"`
	}
	out := s.Call(http.MethodPut, "/api/config"+path, map[string]any{"value": value})
	if err := json.Unmarshal(out, &answer); err != nil {
		s.t.Fatalf("PUT %s answered %s: %v", path, out, err)
	}
	s.WaitEdge(answer.Revision)
	return answer.Version, answer.Revision
}

// Del deletes a value.
func (s *Server) Del(path string) {
	s.t.Helper()
	var answer struct {
		Revision int64 `json:"revision"`
	}
	out := s.Call(http.MethodDelete, "/api/config"+path, nil)
	if err := json.Unmarshal(out, &answer); err != nil {
		s.t.Fatalf("DELETE %s answered %s: %v", path, out, err)
	}
	s.WaitEdge(answer.Revision)
}

// WaitEdge waits until the dev edge holds revision (a commit reaches the edge a moment after
// the writer answers). Put and Del call it, so a session started after them sees their writes
// in its initial state rather than as events, as a test reading them expects.
func (s *Server) WaitEdge(revision int64) {
	s.t.Helper()
	WaitUntil(s.t, 10*time.Second, fmt.Sprintf("the edge holds revision %d", revision), func() bool {
		resp, err := http.Get(s.URL("/edge/healthz"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var health struct {
			Revision int64 `json:"revision"`
		}
		return json.NewDecoder(resp.Body).Decode(&health) == nil && health.Revision >= revision
	})
}

// WaitUntil polls cond until it holds, failing the test after timeout.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
