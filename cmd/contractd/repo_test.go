package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"testing"
)

// repoMaxFileSize is the largest file the repository may hold outside a
// testdata directory.
const repoMaxFileSize = 1 << 20

// repoBlob is one file git tracks: its path and the object it holds.
type repoBlob struct {
	path   string
	object string
}

// repoTrackedFiles lists the regular files in git's index (what a commit
// holds), symbolic links and submodules left out.
func repoTrackedFiles(t *testing.T) []repoBlob {
	t.Helper()
	// From the top of the work tree: below it, ls-files lists only the
	// current directory's files.
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse (the repository check needs a git checkout and git): %v", err)
	}
	ls := exec.Command("git", "ls-files", "--stage", "-z")
	ls.Dir = strings.TrimSpace(string(top))
	out, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files (the repository check needs a git checkout and git): %v", err)
	}
	var blobs []repoBlob
	for entry := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		// "<mode> <object> <stage>\t<path>"
		meta, p, ok := strings.Cut(entry, "\t")
		fields := strings.Fields(meta)
		if !ok || len(fields) != 3 {
			t.Fatalf("git ls-files --stage: unexpected entry %q", entry)
		}
		if fields[0] != "100644" && fields[0] != "100755" {
			continue
		}
		blobs = append(blobs, repoBlob{path: p, object: fields[1]})
	}
	if len(blobs) == 0 {
		t.Fatal("git ls-files lists no files")
	}
	return blobs
}

// repoInspect reads every blob through one `git cat-file --batch` and
// returns each one's size and first bytes, keyed by object name.
func repoInspect(t *testing.T, blobs []repoBlob) (sizes map[string]int64, heads map[string][]byte) {
	t.Helper()
	var in bytes.Buffer
	for _, b := range blobs {
		in.WriteString(b.object + "\n")
	}
	cmd := exec.Command("git", "cat-file", "--batch")
	cmd.Stdin = &in
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("git cat-file: %v", err)
	}
	r := bufio.NewReader(stdout)
	sizes, heads = map[string]int64{}, map[string][]byte{}
	for range blobs {
		header, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("git cat-file: %v", err)
		}
		// "<object> blob <size>"
		f := strings.Fields(header)
		if len(f) != 3 || f[1] != "blob" {
			t.Fatalf("git cat-file: unexpected header %q", header)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("git cat-file: header %q: %v", header, err)
		}
		head := make([]byte, min(size, 4))
		if _, err := io.ReadFull(r, head); err != nil {
			t.Fatal(err)
		}
		// The rest of the content and the newline after it.
		if _, err := io.CopyN(io.Discard, r, size-int64(len(head))+1); err != nil {
			t.Fatal(err)
		}
		sizes[f[0]], heads[f[0]] = size, head
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("git cat-file: %v", err)
	}
	return sizes, heads
}

// inTestdata reports whether p lies under a directory named testdata.
func inTestdata(p string) bool {
	for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if path.Base(dir) == "testdata" {
			return true
		}
	}
	return false
}

// repoProblems names every tracked file that is an ELF executable (anywhere)
// or larger than repoMaxFileSize outside testdata.
func repoProblems(blobs []repoBlob, sizes map[string]int64, heads map[string][]byte) []string {
	var problems []string
	for _, b := range blobs {
		if bytes.Equal(heads[b.object], []byte("\x7fELF")) {
			problems = append(problems, fmt.Sprintf("%s is an ELF binary: build it (scripts/build writes bin/), never commit it", b.path))
			continue
		}
		if s := sizes[b.object]; s > repoMaxFileSize && !inTestdata(b.path) {
			problems = append(problems, fmt.Sprintf("%s is %d bytes, over %d outside testdata/", b.path, s, repoMaxFileSize))
		}
	}
	return problems
}

// The repository holds source, not build output: no committed ELF binary,
// and no file over 1 MB outside testdata/.
func TestRepositoryHoldsNoBinariesOrLargeFiles(t *testing.T) {
	t.Parallel()
	blobs := repoTrackedFiles(t)
	sizes, heads := repoInspect(t, blobs)
	for _, p := range repoProblems(blobs, sizes, heads) {
		t.Error(p)
	}
}

// The check itself: it names an ELF file wherever it is and a large file
// outside testdata/, and lets a large file inside testdata/ and small
// files through.
func TestRepoProblemsNamesBinariesAndLargeFiles(t *testing.T) {
	t.Parallel()
	blobs := []repoBlob{
		{"contractd", "elf"},
		{"cmd/contractd/testdata/bin", "elf"},
		{"docs/big.png", "big"},
		{"cmd/contractd/testdata/fuzz/big", "big"},
		{"README.md", "small"},
		{"testdata/edge", "edge"},
		{"mytestdata/big", "big"},
	}
	sizes := map[string]int64{"elf": 100, "big": repoMaxFileSize + 1, "small": 10, "edge": repoMaxFileSize}
	heads := map[string][]byte{"elf": []byte("\x7fELF"), "big": []byte("\x89PNG"), "small": []byte("# co"), "edge": []byte("abcd")}
	got := repoProblems(blobs, sizes, heads)
	want := []string{"contractd ", "cmd/contractd/testdata/bin ", "docs/big.png ", "mytestdata/big "}
	if len(got) != len(want) {
		t.Fatalf("problems %q, want one for each of %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d is %q, want one about %q", i, got[i], strings.TrimSpace(want[i]))
		}
	}
}
