// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Command workload uses memory the way its environment says, to make the kernel OOM-kill
// containers on purpose.
//
//	WORKLOAD_MODE      steady (default): hold WORKLOAD_MB and sleep.
//	                   leak: add WORKLOAD_STEP_MB every WORKLOAD_INTERVAL until killed.
//	                   spiky: hold WORKLOAD_MB, and every WORKLOAD_INTERVAL add WORKLOAD_SPIKE_MB
//	                   for WORKLOAD_SPIKE_FOR, then release it.
//	                   child-oom: stay small and keep starting child processes that leak until the
//	                   OOM killer ends them, so PID 1 lives while its children are OOM-killed.
//	                   With WORKLOAD_CHILDREN set, PID 1 starts that many and then only sleeps,
//	                   or, with WORKLOAD_EXIT_CODE set too, exits with that code by itself.
//	                   exit: hold WORKLOAD_MB for WORKLOAD_EXIT_AFTER, then exit with
//	                   WORKLOAD_EXIT_CODE (a failure that is not an OOM kill).
//	                   leak-cache: write a file of WORKLOAD_CACHE_MB in WORKLOAD_CACHE_DIR
//	                   (synced), hold WORKLOAD_MB and read the file again and again, so that its page cache
//	                   keeps the cgroup at its limit, and add WORKLOAD_STEP_MB every
//	                   WORKLOAD_INTERVAL: a slow leak that the kernel reclaims cache for, limit
//	                   hit after limit hit, until it cannot.
//	WORKLOAD_MB        memory held (MiB), default 24.
//	WORKLOAD_STEP_MB   leak step (MiB), default 4.
//	WORKLOAD_INTERVAL  period of leak steps, spikes and child starts, default 100ms.
//	WORKLOAD_SPIKE_MB  spike size (MiB), default 64; WORKLOAD_SPIKE_FOR its length, default 1s.
//	WORKLOAD_EXIT_AFTER, WORKLOAD_EXIT_CODE: default 5s and 1.
//
// Every page of what it holds is written, so the memory is resident and charged to the cgroup.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"
)

const mib = 1 << 20

// held keeps allocations reachable so the collector cannot give them back.
var held [][]byte

func main() {
	mode := env("WORKLOAD_MODE", "steady")
	interval := durationEnv("WORKLOAD_INTERVAL", 100*time.Millisecond)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		os.Exit(0)
	}()

	logf("mode=%s pid=%d", mode, os.Getpid())
	switch mode {
	case "steady":
		allocate(intEnv("WORKLOAD_MB", 24))
		select {}
	case "leak":
		leak(intEnv("WORKLOAD_STEP_MB", 4), interval)
	case "spiky":
		spiky(intEnv("WORKLOAD_MB", 24), intEnv("WORKLOAD_SPIKE_MB", 64), interval, durationEnv("WORKLOAD_SPIKE_FOR", time.Second))
	case "child-oom":
		childOOM(interval, intEnv("WORKLOAD_CHILDREN", 0))
		if os.Getenv("WORKLOAD_EXIT_CODE") != "" {
			code := intEnv("WORKLOAD_EXIT_CODE", 0)
			logf("children done, exiting with code %d", code)
			os.Exit(code)
		}
		select {}
	case "leak-cache":
		leakCache(intEnv("WORKLOAD_MB", 24), intEnv("WORKLOAD_CACHE_MB", 16), intEnv("WORKLOAD_STEP_MB", 4), interval, env("WORKLOAD_CACHE_DIR", "/cache"))
	case "exit":
		allocate(intEnv("WORKLOAD_MB", 24))
		time.Sleep(durationEnv("WORKLOAD_EXIT_AFTER", 5*time.Second))
		code := intEnv("WORKLOAD_EXIT_CODE", 1)
		logf("exiting with code %d", code)
		os.Exit(code)
	default:
		logf("unknown WORKLOAD_MODE %q", mode)
		os.Exit(2)
	}
}

func leak(stepMB int, interval time.Duration) {
	for total := 0; ; total += stepMB {
		allocate(stepMB)
		logf("holding %d MiB", total+stepMB)
		time.Sleep(interval)
	}
}

func leakCache(baseMB, cacheMB, stepMB int, interval time.Duration, dir string) {
	// The file is written and synced before the memory is held: dirty pages cannot be reclaimed
	// until a slow disk has written them back, and written at the limit they would end the
	// container before its slow leak began.
	path := dir + "/cache"
	chunk := make([]byte, mib)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	f, err := os.Create(path)
	if err == nil {
		for i := 0; i < cacheMB && err == nil; i++ {
			_, err = f.Write(chunk)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		logf("writing %s: %v", path, err)
		os.Exit(2)
	}
	allocate(baseMB)
	next, total := time.Now().Add(interval), baseMB
	for {
		f, err := os.Open(path)
		if err != nil {
			logf("reading %s: %v", path, err)
			os.Exit(2)
		}
		for {
			if _, err := f.Read(chunk); err != nil {
				break
			}
		}
		_ = f.Close()
		if time.Now().After(next) {
			allocate(stepMB)
			total += stepMB
			logf("holding %d MiB and a %d MiB file", total, cacheMB)
			next = next.Add(interval)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func spiky(baseMB, spikeMB int, interval, spikeFor time.Duration) {
	allocate(baseMB)
	base := len(held)
	for {
		time.Sleep(interval)
		allocate(spikeMB)
		logf("spike to %d MiB", baseMB+spikeMB)
		time.Sleep(spikeFor)
		// Drop the references too: a slice truncated over them would keep the spike reachable
		// until the next one overwrote it, doubling the peak.
		clear(held[base:])
		held = held[:base]
		// Return the spike to the kernel now rather than at the next collection.
		debug.FreeOSMemory()
	}
}

// childOOM runs leaking children one after another. The OOM killer picks the largest process of
// the cgroup, which is always the child, so PID 1 survives and the container never restarts.
// With children > 0 it returns after that many children have ended.
func childOOM(interval time.Duration, children int) {
	self, err := os.Executable()
	if err != nil {
		logf("cannot find own binary: %v", err)
		os.Exit(2)
	}
	for n := 1; children <= 0 || n <= children; n++ {
		cmd := exec.Command(self) //nolint:gosec // this very binary, as a leaking child
		cmd.Env = append(os.Environ(), "WORKLOAD_MODE=leak")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Run()
		logf("child %d ended: %v", n, err)
		time.Sleep(interval)
	}
}

// allocate holds n MiB more, writing one byte per page so every page is resident.
func allocate(n int) {
	for i := 0; i < n; i++ {
		b := make([]byte, mib)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		held = append(held, b)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s workload: %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func intEnv(name string, def int) int {
	v, err := strconv.Atoi(env(name, strconv.Itoa(def)))
	if err != nil {
		logf("bad %s: %v", name, err)
		os.Exit(2)
	}
	return v
}

func durationEnv(name string, def time.Duration) time.Duration {
	v, err := time.ParseDuration(env(name, def.String()))
	if err != nil {
		logf("bad %s: %v", name, err)
		os.Exit(2)
	}
	return v
}
