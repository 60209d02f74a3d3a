package drill

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ, the unit of /proc/PID/stat's times
// (100 on every Linux this runs on).
const clockTick = 100

// procStat is what the drill reads of /proc/PID/stat.
type procStat struct {
	state   byte
	ppid    int
	cpuTime time.Duration // user + system
	// childTime is the user + system time of its children it waited for.
	childTime time.Duration
}

// readStat reads /proc/PID/stat; ok is false when the process is gone.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] state, f[1] ppid, ..., f[11] utime, f[12] stime, f[13]
	// cutime, f[14] cstime.
	if len(f) < 15 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	ticks := func(i int) time.Duration {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(n) * time.Second / clockTick
	}
	return procStat{state: f[0][0], ppid: ppid, cpuTime: ticks(11) + ticks(12), childTime: ticks(13) + ticks(14)}, true
}

// alive reports that pid runs (a zombie has finished).
func alive(pid int) bool {
	s, ok := readStat(pid)
	return ok && s.state != 'Z' && s.state != 'X'
}

// cmdline returns a process's command line, its arguments joined by
// spaces ("" when it is gone).
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// allPids lists every process's pid.
func allPids() []int {
	ds, _ := filepath.Glob("/proc/[0-9]*")
	out := make([]int, 0, len(ds))
	for _, d := range ds {
		if p, err := strconv.Atoi(filepath.Base(d)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// children lists the living children of ppid.
func children(ppid int) []int {
	var out []int
	for _, p := range allPids() {
		if s, ok := readStat(p); ok && s.ppid == ppid && s.state != 'Z' && s.state != 'X' {
			out = append(out, p)
		}
	}
	return out
}

// postmasterPid reads the pid of the Postgres whose data directory is dir.
func postmasterPid(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid of %s: %w", dir, err)
	}
	return pid, nil
}
