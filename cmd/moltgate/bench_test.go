package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltgate/moltgate/internal/benchdata"
)

// The real binary, built once per test process into binDir: start-up
// time and RSS are those of what users run, not of the test executable.
// The image's is built by the Dockerfile's own go build line (static,
// stripped, trimmed, nomsgpack), run from the repository's root as
// scripts/test-deploy.sh runs it, so the benchmark cannot drift from the
// image.
var (
	plainBinary = sync.OnceValues(func() (string, error) {
		path := filepath.Join(binDir, "moltgate")
		return path, runBuild(exec.Command("go", "build", "-o", path, "."))
	})
	imageBinary = sync.OnceValues(func() (string, error) {
		line, err := dockerfileBuildLine()
		if err != nil {
			return "", err
		}
		path := filepath.Join(binDir, "moltgate-image")
		cmd := exec.Command("sh", "-c", strings.Replace(line, dockerfileOutput, "'"+path+"'", 1))
		cmd.Dir = "../.."
		return path, runBuild(cmd)
	})
)

// binDir holds the binaries the benchmarks build; TestMain makes it and
// removes it after the run.
var binDir string

func runBuild(cmd *exec.Cmd) error {
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// dockerfileOutput is where the Dockerfile's go build line writes the binary.
const dockerfileOutput = "/out/moltgate"

// dockerfileBuildLine returns the shell command of the Dockerfile's one
// RUN line that builds moltgate.
func dockerfileBuildLine() (string, error) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		return "", err
	}
	var builds []string
	for _, line := range strings.Split(string(b), "\n") {
		if cmd, ok := strings.CutPrefix(line, "RUN "); ok && strings.Contains(cmd, "go build ") {
			builds = append(builds, cmd)
		}
	}
	if len(builds) != 1 || !strings.Contains(builds[0], "-o "+dockerfileOutput+" ./cmd/moltgate") {
		return "", fmt.Errorf("want one go build line writing %s from ./cmd/moltgate in the Dockerfile, found %q", dockerfileOutput, builds)
	}
	return builds[0], nil
}

func moltgateBinary(b *testing.B) string { return mustBinary(b, plainBinary) }

func dockerfileBinary(b *testing.B) string { return mustBinary(b, imageBinary) }

func mustBinary(b *testing.B, build func() (string, error)) string {
	path, err := build()
	if err != nil {
		b.Fatal(err)
	}
	return path
}

// startServe starts moltgate serve on dataDir and returns the time from
// process start to /readyz 200 and the memory at that moment; it stops the
// process before returning.
func startServe(b *testing.B, dataDir string) (time.Duration, procMemory) {
	return startBinary(b, moltgateBinary(b), map[string]string{"MOLTGATE_DATA_DIR": dataDir,
		"R2_ACCESS_KEY_ID": "", "R2_SECRET_ACCESS_KEY": "", "CF_ACCOUNT_ID": "", "R2_ENDPOINT": "", "MOLTGATE_LITESTREAM_CONFIG": ""}, "127.0.0.1", 0)
}

// startBinary runs bin serve with vars on host (a free port), and returns
// the time from exec to /readyz 200 and its memory then; idle, when not
// zero, waits that long before reading the memory. It stops the process
// before returning.
func startBinary(b *testing.B, bin string, vars map[string]string, host string, idle time.Duration) (time.Duration, procMemory) {
	port := freePort(b)
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "MOLTGATE_LISTEN="+host+":"+port)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	for {
		res, err := client.Get("http://127.0.0.1:" + port + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 3*time.Minute {
			b.Fatal("serve did not become ready")
		}
		time.Sleep(time.Millisecond)
	}
	ready := time.Since(start)
	time.Sleep(idle)
	return ready, readMemory(b, cmd.Process.Pid)
}

// procMemory is a process's resident memory in MB: all of it (RSS), and
// its anonymous part (heap, stacks, SQLite's caches: what the process
// itself allocated) and file-backed part (the binary's pages it touched:
// clean and shared, which the kernel can drop and read again).
type procMemory struct{ RSS, Anon, File float64 }

// reportStarts reports the median time to ready and RSS of b's starts.
func reportStarts(b *testing.B, times []time.Duration, rss []float64) {
	slices.Sort(times)
	slices.Sort(rss)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-to-ready")
	b.ReportMetric(rss[len(rss)/2], "rss-MB")
	b.ReportMetric(0, "ns/op")
}

func readMemory(b *testing.B, pid int) procMemory {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var m procMemory
	fields := map[string]*float64{"VmRSS:": &m.RSS, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), "\t")
		if dst := fields[name]; dst != nil {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			*dst = kb / 1024
		}
	}
	if m.RSS == 0 {
		b.Fatal("no VmRSS in /proc/<pid>/status")
	}
	return m
}

// BenchmarkServeReady measures `moltgate serve` from process start to
// /readyz 200, and its RSS then: on an empty log, on a 1,000,000-event log
// without read-model snapshots (the cold start after a restore), and on the
// same log with the snapshots a clean shutdown leaves (an ordinary restart).
func BenchmarkServeReady(b *testing.B) {
	b.Run("empty", func(b *testing.B) {
		var times []time.Duration
		var rss []float64
		for i := 0; i < b.N; i++ {
			d, r := startServe(b, filepath.Join(b.TempDir(), "data"))
			times, rss = append(times, d), append(rss, r.RSS)
		}
		reportStarts(b, times, rss)
	})
	fixture := benchdata.Fixture(b, 1_000_000)
	b.Run("1M-cold", func(b *testing.B) {
		var times []time.Duration
		var rss []float64
		for i := 0; i < b.N; i++ {
			dir := filepath.Join(b.TempDir(), "data")
			benchdata.Copy(b, fixture, filepath.Join(dir, "moltgate.db"))
			d, r := startServe(b, dir)
			times, rss = append(times, d), append(rss, r.RSS)
		}
		reportStarts(b, times, rss)
	})
	b.Run("1M-warm", func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "data")
		benchdata.Copy(b, fixture, filepath.Join(dir, "moltgate.db"))
		startServe(b, dir) // leaves snapshots behind at shutdown
		var times []time.Duration
		var rss []float64
		for i := 0; i < b.N; i++ {
			d, r := startServe(b, dir)
			times, rss = append(times, d), append(rss, r.RSS)
		}
		reportStarts(b, times, rss)
	})
}
