// Command reliability tries malformed inputs, faults and interruptions
// against the real CLI (bin/ares) and writes a table of what happened, case
// by case and class by class: the command, its exit code, the first line of
// its standard error and a verdict.
//
//	make ares && go run ./bench/reliability [-ares bin/ares] [-out bench/results/reliability.md]
//
// Verdicts: ok (a clear error naming the place and the cause, or correct
// behaviour with nothing lost), poor (the right outcome with an unclear
// message, or a message without the place), bad (silent acceptance of a bad
// value, a crash, lost or different work). Every case runs on tiny models of
// the synthetic world, so the whole run takes a few minutes on 2 cores.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ares-rlhf/ares/bench/internal/measure"
)

type result struct {
	Class, Name string
	Cmd         string
	Exit        int
	Stderr      string // first line
	Verdict     string
	Note        string
}

type harness struct {
	ares    string
	work    string
	rng     *rand.Rand
	results []result
	// fixtures
	policy, rm string
	sftCfg     string
	rtCfg      string
}

func main() {
	aresFlag := flag.String("ares", "bin/ares", "the ares binary")
	out := flag.String("out", "bench/results/reliability.md", "the table (Markdown)")
	seed := flag.Int64("seed", 1, "seed of the random kill moments")
	kills := flag.Int("kills", 20, "kill -9 moments per long command")
	keep := flag.Bool("keep", false, "keep the work directory")
	only := flag.String("only", "", "run only the classes whose name contains this")
	flag.Parse()
	ares, err := filepath.Abs(*aresFlag)
	if err != nil {
		fatal(err)
	}
	if _, err := os.Stat(ares); err != nil {
		fatal(fmt.Errorf("%s: %v (run make ares first)", ares, err))
	}
	work, err := os.MkdirTemp("", "ares-reliability-")
	if err != nil {
		fatal(err)
	}
	if !*keep {
		defer os.RemoveAll(work)
	}
	h := &harness{ares: ares, work: work, rng: rand.New(rand.NewSource(*seed))}
	t0 := time.Now()
	h.fixtures()
	classes := []struct {
		name string
		run  func()
	}{
		{"run config (TOML)", h.runConfigCases},
		{"red-team config (TOML)", h.redteamConfigCases},
		{"study config (TOML)", h.studyConfigCases},
		{"command judge output", h.commandJudgeCases},
		{"flags", h.flagCases},
		{"data files (JSONL, CSV)", h.dataCases},
		{"model directories", h.modelCases},
		{"damaged checkpoints", h.checkpointCases},
		{"signals (SIGINT, SIGTERM)", h.signalCases},
		{"kill -9 and resume", h.killCases(*kills)},
		{"disk full (ulimit -f)", h.diskFullCases},
	}
	for _, c := range classes {
		if *only != "" && !strings.Contains(c.name, *only) {
			continue
		}
		n := len(h.results)
		t := time.Now()
		c.run()
		for i := n; i < len(h.results); i++ {
			h.results[i].Class = c.name
		}
		fmt.Fprintf(os.Stderr, "%-28s %3d cases in %s\n", c.name, len(h.results)-n, time.Since(t).Round(time.Second))
	}
	if err := h.write(*out, time.Since(t0), *seed, *kills); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s (%d cases, %s)\n", *out, len(h.results), time.Since(t0).Round(time.Second))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "reliability:", err)
	os.Exit(1)
}

// ---- running the CLI ----------------------------------------------------------

type run struct {
	exit   int
	stdout string
	stderr string
	dur    time.Duration
}

func (r run) first() string {
	// The first line that is not a progress line.
	for _, l := range strings.Split(r.stderr, "\n") {
		l = strings.TrimSpace(l)
		if i := strings.LastIndex(l, "\r"); i >= 0 {
			l = l[i+1:]
		}
		if l == "" || progressLine.MatchString(l) || strings.HasPrefix(l, "saved ") || strings.HasPrefix(l, "wrote ") {
			continue
		}
		return l
	}
	return ""
}

var progressLine = regexp.MustCompile(`^\S+ \d+/\d+ `)

func (h *harness) cmd(args ...string) *exec.Cmd {
	c := exec.Command(h.ares, args...)
	c.Env = append(os.Environ(), "ARES_NUM_THREADS=1")
	c.Dir = h.work
	return c
}

func (h *harness) exec(timeout time.Duration, args ...string) run {
	return h.execCmd(timeout, h.cmd(args...))
}

func (h *harness) execCmd(timeout time.Duration, c *exec.Cmd) run {
	var so, se bytes.Buffer
	c.Stdout, c.Stderr = &so, &se
	t := time.Now()
	if err := c.Start(); err != nil {
		return run{exit: -1, stderr: err.Error()}
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		c.Process.Kill()
		<-done
		return run{exit: -2, stderr: "timed out after " + timeout.String(), dur: time.Since(t)}
	}
	return run{exit: exitCode(err), stdout: so.String(), stderr: se.String(), dur: time.Since(t)}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// expect runs args (for a minute at most) and records the case as
// expectError judges it.
func (h *harness) expect(name string, args []string, want ...string) {
	r := h.exec(time.Minute, args...)
	verdict, note := expectError(r, want...)
	h.add(name, args, r, verdict, note)
}

func (h *harness) add(name string, args []string, r run, verdict, note string) {
	// The work directory is shortened in messages as in commands: the table
	// names no path of the machine it ran on.
	stderr := strings.ReplaceAll(r.first(), h.work+"/", "")
	h.results = append(h.results, result{Name: name, Cmd: h.show(args), Exit: r.exit, Stderr: stderr, Verdict: verdict, Note: note})
}

// show is the command as a reader would type it, with the work directory
// shortened.
func (h *harness) show(args []string) string {
	s := "ares " + strings.Join(args, " ")
	return strings.ReplaceAll(s, h.work+"/", "")
}

func (h *harness) path(parts ...string) string {
	return filepath.Join(append([]string{h.work}, parts...)...)
}

func (h *harness) write1(name, body string) string {
	p := h.path(name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		fatal(err)
	}
	return p
}

// expectError judges a run that must fail with a message naming each of
// want (the place and the cause): ok when it exits 1 and the message names
// them all, poor when it fails (exit 1) without naming them, bad otherwise
// (exit 0: silently accepted; a crash; a timeout).
func expectError(r run, want ...string) (string, string) {
	switch {
	case r.exit == 0:
		return "bad", "accepted"
	case r.exit == 2 && strings.Contains(r.stderr, "goroutine "):
		return "bad", "Go panic trace"
	case r.exit < 0 || r.exit > 2:
		return "bad", fmt.Sprintf("exit %d", r.exit)
	}
	var missing []string
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		return "poor", "message lacks " + strings.Join(missing, ", ")
	}
	return "ok", ""
}

// ---- fixtures -------------------------------------------------------------------

const sftBase = `[run]
seed = 3
checkpoint_every = 2
keep_last = 20

[data]
world = true

[sft]
steps = 8
batch = 4
lr = 3e-3
warmup = 2
`

const rtBase = `[run]
name = "rel"
seed = 1
threads = 1

[generation]
max_new_tokens = 8
batch = 8
rm_batch = 16

[redteam]
budget = 48
k = 2
batch = 8
write_all = true
`

func (h *harness) fixtures() {
	h.sftCfg = h.write1("sft.toml", sftBase)
	if r := h.exec(2*time.Minute, "sft", "--config", h.sftCfg, "--out", h.path("base-sft")); r.exit != 0 {
		fatal(fmt.Errorf("fixture sft: %s", r.stderr))
	}
	h.policy = h.path("base-sft", "policy")
	rmCfg := h.write1("rm.toml", "[run]\nseed = 3\n[data]\nworld = true\n[train_rm]\nsteps = 6\nbatch = 4\nlr = 2e-3\nwarmup = 1\n")
	if r := h.exec(2*time.Minute, "train-rm", "--config", rmCfg, "--out", h.path("base-rm")); r.exit != 0 {
		fatal(fmt.Errorf("fixture train-rm: %s", r.stderr))
	}
	h.rm = h.path("base-rm", "rm")
	h.rtCfg = h.write1("rt.toml", rtBase)
}

// ---- run config ---------------------------------------------------------------

// numericKeys lists section.key of every numeric setting in an example
// config (lines "key = number" under a [section]).
func numericKeys(path string, skip ...string) [][2]string {
	b, err := os.ReadFile(path)
	if err != nil {
		fatal(err)
	}
	var out [][2]string
	sec := ""
	num := regexp.MustCompile(`^([a-z_]+)\s*=\s*(-?[0-9][0-9.eE+-]*)\s*(#.*)?$`)
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			sec = strings.Trim(strings.SplitN(l, "#", 2)[0], "[] ")
			continue
		}
		if m := num.FindStringSubmatch(l); m != nil && sec != "" {
			skipIt := false
			for _, s := range skip {
				if s == sec {
					skipIt = true
				}
			}
			if !skipIt {
				out = append(out, [2]string{sec, m[1]})
			}
		}
	}
	return out
}

// withKey returns base with key = value set in [section] (replacing the key
// when base has it, adding the section when it has not).
func withKey(base, section, key, value string) string {
	lines := strings.Split(base, "\n")
	sec := ""
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			sec = strings.Trim(t, "[] ")
			continue
		}
		if sec == section && strings.HasPrefix(t, key+" ") {
			lines[i] = key + " = " + value
			return strings.Join(lines, "\n")
		}
	}
	for i, l := range lines {
		if strings.TrimSpace(l) == "["+section+"]" {
			out := append([]string{}, lines[:i+1]...)
			out = append(out, key+" = "+value)
			return strings.Join(append(out, lines[i+1:]...), "\n")
		}
	}
	return base + "\n[" + section + "]\n" + key + " = " + value + "\n"
}

func lineOf(body, section, key string) int {
	sec := ""
	for i, l := range strings.Split(body, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			sec = strings.Trim(t, "[] ")
			continue
		}
		if sec == section && strings.HasPrefix(t, key+" ") {
			return i + 1
		}
	}
	return 0
}

// judgeAccepted revises the verdict of a bad value that was accepted (exit
// 0) or that failed later than validation: a valid value accepted is ok; a
// finite but absurd value (1e300) accepted, or rejected only when an op
// overflows, is poor (no upper bound, but nothing silent: the run fails or
// the value is harmless); a non-finite or negative value accepted stays bad.
func judgeAccepted(r run, key, v, verdict, note string) (string, string) {
	switch {
	case r.exit == 0 && inRange(key, v):
		return "ok", "a valid value, accepted"
	case r.exit == 0 && v == "1e300":
		return "poor", "finite but absurd value accepted (no upper bound)"
	case r.exit == 1 && v == "1e300" && verdict == "poor":
		return "poor", "rejected only when an op overflowed, without the key"
	}
	return verdict, note
}

// inRange: values that are valid for a key (accepting them is correct).
func inRange(key, value string) bool {
	switch {
	case key == "seed":
		return value == "-1" // any integer seeds the streams
	case key == "rm_high" || key == "rm_margin" || key == "a_margin" || key == "margin" || key == "center_coef":
		return value == "-1" // thresholds and margins may be negative
	}
	return false
}

func (h *harness) runConfigCases() {
	keys := numericKeys(filepath.Join(repoRoot(), "examples", "repair.toml"))
	values := []string{"nan", "inf", "-1", "1e300"}
	for _, k := range keys {
		sec, key := k[0], k[1]
		for _, v := range values {
			body := sftBase
			if strings.HasPrefix(sec, "lora") {
				// Adapters on, so that their values are checked.
				body = withKey(withKey(withKey(body, sec, "r", "2"), sec, "lora_alpha", "4"), sec, "target_modules", `["q_proj"]`)
			}
			body = withKey(body, sec, key, v)
			cfg := h.write1(fmt.Sprintf("cfg/%s.%s.%s.toml", sec, key, v), body)
			args := []string{"sft", "--config", cfg, "--out", h.path("cfgout"), "--max-steps", "1"}
			r := h.exec(time.Minute, args...)
			os.RemoveAll(h.path("cfgout"))
			verdict, note := expectError(r, fmt.Sprintf("%s:%d", filepath.Base(cfg), lineOf(body, sec, key)), key)
			verdict, note = judgeAccepted(r, key, v, verdict, note)
			h.add(fmt.Sprintf("%s.%s = %s", sec, key, v), args, r, verdict, note)
		}
	}
	// Structure: unknown keys, wrong types, broken TOML, duplicate keys.
	structural := []struct{ name, body, want string }{
		{"unknown key in [sft]", sftBase + "stpes = 3\n", "stpes"},
		{"unknown section", sftBase + "[sftt]\nsteps = 3\n", "sftt"},
		{"string for a number", withKey(sftBase, "sft", "steps", `"eight"`), "sft.steps"},
		{"float for an integer", withKey(sftBase, "sft", "steps", "8.5"), "steps"},
		{"bool for a number", withKey(sftBase, "sft", "lr", "true"), "lr"},
		{"array for a number", withKey(sftBase, "sft", "batch", "[4]"), "batch"},
		{"integer overflow", withKey(sftBase, "sft", "steps", "99999999999999999999999"), "steps"},
		{"duplicate key", sftBase + "steps = 9\n", "steps"},
		{"unterminated string", sftBase + "[run]\nout = \"x\n", "toml"},
		{"broken table header", sftBase + "[sft\n", "toml"},
		{"bad dtype name", withKey(sftBase, "run", "dtype", `"float33"`), "dtype"},
		{"bad device name", withKey(sftBase, "run", "device", `"tpu"`), "device"},
		{"binary garbage", "\x00\x01\x02\xff\xfe", "toml"},
		{"invalid UTF-8 in a string", withKey(sftBase, "run", "out", "\"o\xff\""), "UTF-8"},
	}
	for _, c := range structural {
		cfg := h.write1("cfg/struct-"+strings.ReplaceAll(c.name, " ", "-")+".toml", c.body)
		args := []string{"sft", "--config", cfg, "--out", h.path("cfgout"), "--max-steps", "1"}
		h.expect(c.name, args, c.want)
		os.RemoveAll(h.path("cfgout"))
	}
	h.expect("missing config file", []string{"sft", "--config", h.path("nope.toml")}, "nope.toml")
}

func repoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return wd
}

// ---- red-team config -------------------------------------------------------------

func (h *harness) redteamConfigCases() {
	keys := numericKeys(filepath.Join(repoRoot(), "examples", "redteam.toml"), "models")
	for _, k := range keys {
		sec, key := k[0], k[1]
		for _, v := range []string{"nan", "-1", "1e300"} {
			body := withKey(rtBase, sec, key, v)
			cfg := h.write1(fmt.Sprintf("rtcfg/%s.%s.%s.toml", sec, key, v), body)
			args := []string{"redteam", "--config", cfg, "--policy", h.policy, "--rm", h.rm, "--out", h.path("rtout"), "--quiet"}
			r := h.exec(time.Minute, args...)
			os.RemoveAll(h.path("rtout"))
			verdict, note := expectError(r, fmt.Sprintf("%s:%d", filepath.Base(cfg), lineOf(body, sec, key)), key)
			verdict, note = judgeAccepted(r, key, v, verdict, note)
			h.add(fmt.Sprintf("%s.%s = %s", sec, key, v), args, r, verdict, note)
		}
	}
	for _, c := range []struct{ name, body, want string }{
		{"unknown key in [redteam]", rtBase + "bugdet = 5\n", "bugdet"},
		{"unknown sampler kind", rtBase + "[redteam.sampler]\nkind = \"greedy\"\n", "greedy"},
		{"unknown judge kind", rtBase + "[judge]\nkind = \"vibes\"\n", "vibes"},
		{"http judge without url", rtBase + "[judge]\nkind = \"http\"\n", "url"},
		{"command judge that does not exist", rtBase + "[judge]\nkind = \"command\"\n[judge.command]\nargv = [\"/nonexistent/judge\"]\n", "judge"},
	} {
		cfg := h.write1("rtcfg/struct-"+strings.ReplaceAll(c.name, " ", "-")+".toml", c.body)
		args := []string{"redteam", "--config", cfg, "--policy", h.policy, "--rm", h.rm, "--out", h.path("rtout"), "--quiet"}
		h.expect(c.name, args, c.want)
		os.RemoveAll(h.path("rtout"))
	}
}

// ---- study config ---------------------------------------------------------------

// studyKeys lists [section, key] of every numeric setting of a study config,
// the optional ones shown commented out ("#key = value" under "[table]" or
// "#[table]") included; top-level keys have section "". Array tables
// ([[goals]]) and the tables without sizes are left out.
func studyKeys(path string) [][2]string {
	b, err := os.ReadFile(path)
	if err != nil {
		fatal(err)
	}
	var out [][2]string
	sec := ""
	num := regexp.MustCompile(`^#?([a-z_]+)\s*=\s*(-?[0-9][0-9.eE+-]*)\s*(#.*)?$`)
	head := regexp.MustCompile(`^#?\[([a-z_.]+)\]`)
	seen := map[[2]string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[[") || strings.HasPrefix(l, "#[[") {
			sec = "[["
			continue
		}
		if m := head.FindStringSubmatch(l); m != nil {
			sec = m[1]
			continue
		}
		m := num.FindStringSubmatch(l)
		if m == nil || sec == "[[" {
			continue
		}
		switch sec {
		case "study", "models", "probes", "judge", "world":
			continue
		}
		k := [2]string{sec, m[1]}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// studyConfigCases: `ares bench study` with a bad value of each numeric
// key. The base config names starting models that do not exist, so that a
// config that passes validation fails at once on them (the sentinel) rather
// than running a study: such a run counts as the value accepted.
func (h *harness) studyConfigCases() {
	sentinel := h.path("study", "no-such-start")
	base := "[study]\nsize = \"quick\"\nseeds = [1]\narms = [\"baseline\"]\n\n[models]\npolicy = \"" + sentinel + "/policy\"\nrm = \"" + sentinel + "/rm\"\n"
	// run1 runs one config; judged is the run as the verdict sees it: exit
	// 0 when validation passed and the run stopped on the missing start.
	run1 := func(name, body string) (r, judged run, args []string) {
		cfg := h.write1("study/"+name+".toml", body)
		args = []string{"bench", "study", "--config", cfg, "--out", h.path("study", "out")}
		r = h.exec(time.Minute, args...)
		os.RemoveAll(h.path("study", "out"))
		judged = r
		if r.exit == 1 && strings.Contains(r.stderr, sentinel) && !strings.Contains(r.stderr, filepath.Base(cfg)) {
			judged.exit = 0
		}
		return r, judged, args
	}
	r, judged, args := run1("control", base)
	if judged.exit != 0 {
		h.add("valid study config (control)", args, r, "bad", "the control config did not pass validation")
		return
	}
	h.add("valid study config (control)", args, r, "ok", "passes validation (then stops on the missing start models)")
	for _, k := range studyKeys(filepath.Join(repoRoot(), "bench", "study.toml")) {
		sec, key := k[0], k[1]
		for _, v := range []string{"nan", "-1", "1e300"} {
			var body string
			if sec == "" {
				body = key + " = " + v + "\n" + base
			} else {
				body = withKey(base, sec, key, v)
			}
			name := strings.TrimPrefix(sec+"."+key, ".")
			r, judged, args := run1(fmt.Sprintf("%s.%s", name, v), body)
			cfg := fmt.Sprintf("%s.%s.toml", name, v)
			verdict, note := expectError(judged, fmt.Sprintf("%s:%d", cfg, lineOf(body, sec, key)), key)
			verdict, note = judgeAccepted(judged, key, v, verdict, note)
			h.add(fmt.Sprintf("%s = %s", name, v), args, r, verdict, note)
		}
	}
	for _, c := range []struct{ name, body, want string }{
		{"unknown size", strings.Replace(base, `size = "quick"`, `size = "huge"`, 1), "huge"},
		{"unknown arm", strings.Replace(base, `arms = ["baseline"]`, `arms = ["baseline", "magic"]`, 1), "magic"},
		{"seed listed twice", strings.Replace(base, "seeds = [1]", "seeds = [1, 1]", 1), "seeds"},
		{"unknown key", base + "\n[sft]\nstpes = 3\n", "stpes"},
		{"goal with an unknown rule", base + "\n[[goals]]\nname = \"g\"\nmetric = \"type_c_coupled\"\narms = [\"baseline\"]\nphase = \"start\"\nrule = \"vibes\"\nvalue = 0.1\n", "vibes"},
		{"goal value nan", base + "\n[[goals]]\nname = \"g\"\nmetric = \"type_c_coupled\"\narms = [\"baseline\"]\nphase = \"start\"\nrule = \"every_seed_at_least\"\nvalue = nan\n", "value"},
	} {
		r, judged, args := run1("struct-"+strings.ReplaceAll(c.name, " ", "-"), c.body)
		verdict, note := expectError(judged, c.want)
		h.add(c.name, args, r, verdict, note)
	}
}

// ---- command judge ----------------------------------------------------------------

// commandJudgeCases: `ares redteam` with a command judge whose answers are
// wrong in each way the protocol allows; the run must stop with an error
// naming the judge and the fault, or, for a well-behaved judge, finish.
func (h *harness) commandJudgeCases() {
	// A judge script answers score S for each input line, ids 0..n-1.
	each := func(line string) string {
		return "n=0\nwhile IFS= read -r l; do\n  " + line + "\n  n=$((n+1))\ndone\n"
	}
	cases := []struct {
		name, script, extra string
		want                []string // nil: the run must succeed
	}{
		{"valid judge (control)", each(`echo "{\"id\": $n, \"score\": 0}"`), "", nil},
		{"valid judge with chatter on stderr", each(`echo "{\"id\": $n, \"score\": 0}"; echo "scored $n" >&2`), "", nil},
		{"answers in reverse order", "n=0\nwhile IFS= read -r l; do n=$((n+1)); done\nwhile [ $n -gt 0 ]; do n=$((n-1)); echo \"{\\\"id\\\": $n, \\\"score\\\": 0}\"; done\n", "", nil},
		{"not JSON", "cat >/dev/null\necho hello\n", "", []string{"judge", "stdout line 1"}},
		{"a log line before the answers", "echo 'loading model...'\n" + each(`echo "{\"id\": $n, \"score\": 0}"`), "", []string{"judge", "stdout line 1"}},
		{"score 1.5", each(`echo "{\"id\": $n, \"score\": 1.5}"`), "", []string{"judge", "score 1.5 is not in [0, 1]"}},
		{"score -0.1", each(`echo "{\"id\": $n, \"score\": -0.1}"`), "", []string{"judge", "not in [0, 1]"}},
		{"score NaN", each(`echo "{\"id\": $n, \"score\": NaN}"`), "", []string{"judge", "NaN"}},
		{"score as a string", each(`echo "{\"id\": $n, \"score\": \"high\"}"`), "", []string{"judge", "stdout line 1"}},
		{"no score field", each(`echo "{\"id\": $n}"`), "", []string{"judge", "stdout line 1"}},
		{"only the first item scored", "cat >/dev/null\necho '{\"id\": 0, \"score\": 0}'\n", "", []string{"judge", "no score for id 1"}},
		{"an id repeated", each(`echo "{\"id\": 0, \"score\": 0}"`), "", []string{"judge", "repeats id 0"}},
		{"id out of range", each(`echo "{\"id\": $((n+1000)), \"score\": 0}"`), "", []string{"judge", "out of range"}},
		{"empty answer", "cat >/dev/null\n", "", []string{"judge", "no score for id 0"}},
		{"exit status 3 with a message", "cat >/dev/null\necho 'judge model not found' >&2\nexit 3\n", "", []string{"judge", "exit status 3", "judge model not found"}},
		{"killed by a signal", "cat >/dev/null\nkill -9 $$\n", "", []string{"judge", "killed"}},
		{"a 2 MiB line", "cat >/dev/null\nhead -c 2097152 /dev/zero | tr '\\0' a\necho\n", "", []string{"judge", "over the limit"}},
		{"hangs past timeout_s", "sleep 30\n", "timeout_s = 1\ndeadline_s = 3\n", []string{"judge", "timed out"}},
		{"timeout_s = nan", each(`echo "{\"id\": $n, \"score\": 0}"`), "timeout_s = nan\n", []string{"timeout_s"}},
		{"timeout_s = -1", each(`echo "{\"id\": $n, \"score\": 0}"`), "timeout_s = -1\n", []string{"timeout_s"}},
		{"batch_size = -5", each(`echo "{\"id\": $n, \"score\": 0}"`), "batch_size = -5\n", []string{"batch_size"}},
	}
	for i, c := range cases {
		script := h.write1(fmt.Sprintf("judge/j%02d.sh", i), c.script)
		body := rtBase + "\n[judge]\nkind = \"command\"\n[judge.command]\nargv = [\"sh\", \"" + script + "\"]\n" + c.extra
		cfg := h.write1(fmt.Sprintf("judge/rt%02d.toml", i), body)
		args := []string{"redteam", "--config", cfg, "--policy", h.policy, "--rm", h.rm, "--out", h.path("judgeout"), "--quiet"}
		r := h.exec(2*time.Minute, args...)
		os.RemoveAll(h.path("judgeout"))
		var verdict, note string
		if c.want == nil {
			verdict, note = "ok", "the run finishes"
			if r.exit != 0 {
				verdict, note = "bad", "a well-behaved judge failed the run"
			}
		} else {
			verdict, note = expectError(r, c.want...)
		}
		h.add(c.name, args, r, verdict, note)
	}
}

// ---- flags ----------------------------------------------------------------------

func (h *harness) flagCases() {
	prompts := h.write1("flags/prompts.jsonl", `{"prompt": "hello"}`+"\n")
	gen := func(extra ...string) []string {
		return append([]string{"generate", "--model", h.policy, "--prompts", prompts, "--max-new-tokens", "4"}, extra...)
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"generate --temperature nan", gen("--temperature", "nan"), []string{"temperature"}},
		{"generate --temperature -1", gen("--temperature", "-1"), []string{"temperature"}},
		{"generate --top-p 2", gen("--top-p", "2"), []string{"top-p"}},
		{"generate --top-p nan", gen("--top-p", "nan"), []string{"top-p"}},
		{"generate --top-k -3", gen("--top-k", "-3"), []string{"top-k"}},
		{"generate --max-new-tokens -1", gen("--max-new-tokens", "-1"), []string{"max-new-tokens"}},
		{"generate --max-new-tokens 1e9", gen("--max-new-tokens", "1000000000"), []string{"context"}},
		{"generate --batch-size 0", gen("--batch-size", "0"), []string{"batch-size"}},
		{"generate --dtype float33", gen("--dtype", "float33"), []string{"float33"}},
		{"generate --device cuda:9", gen("--device", "cuda:9"), []string{"cuda"}},
		{"generate --device tpu", gen("--device", "tpu"), []string{"tpu"}},
		{"generate unknown flag", gen("--temprature", "1"), []string{"temprature"}},
		{"sft --max-steps -1", []string{"sft", "--config", h.sftCfg, "--out", h.path("flagout"), "--max-steps", "-1"}, []string{"max-steps"}},
		{"redteam --budget -5", []string{"redteam", "--config", h.rtCfg, "--policy", h.policy, "--rm", h.rm, "--out", h.path("flagout"), "--budget", "-5"}, []string{"budget"}},
		{"redteam --sampler greedy", []string{"redteam", "--config", h.rtCfg, "--policy", h.policy, "--rm", h.rm, "--out", h.path("flagout"), "--sampler", "greedy"}, []string{"greedy"}},
		{"redteam --seed abc", []string{"redteam", "--config", h.rtCfg, "--seed", "abc"}, []string{"seed"}},
		{"repair --stage sideways", []string{"repair", "--config", h.sftCfg, "--stage", "sideways"}, []string{"sideways"}},
		{"unknown command", []string{"sfft"}, []string{"sfft"}},
	}
	for _, c := range cases {
		r := h.exec(time.Minute, c.args...)
		os.RemoveAll(h.path("flagout"))
		verdict, note := expectError(r, c.want...)
		if r.exit == 2 && verdict == "ok" {
			note = "usage error (exit 2)"
		}
		h.add(c.name, c.args, r, verdict, note)
	}
}

// ---- data files ------------------------------------------------------------------

func (h *harness) dataCases() {
	huge := strings.Repeat("a", 64<<20)
	// generate --prompts
	for _, c := range []struct{ name, body, want string }{
		{"prompts: invalid JSON", "{\"prompt\": \"hi\"\n", "prompts.jsonl:1"},
		{"prompts: missing field", "{\"promt\": \"hi\"}\n", "prompts.jsonl:1"},
		{"prompts: wrong type", "{\"prompt\": 5}\n", "prompts.jsonl:1"},
		{"prompts: bad UTF-8", "{\"prompt\": \"h\xffi\"}\n", "prompts.jsonl:1"},
		{"prompts: second line broken", "{\"prompt\": \"hi\"}\n{\"prompt\": \n", "prompts.jsonl:2"},
		{"prompts: 64 MiB line", "{\"prompt\": \"" + huge + "\"}\n", "prompts.jsonl:1"},
		{"prompts: token id out of range", "{\"input_ids\": [1, 99999999]}\n", "prompts.jsonl:1"},
		{"prompts: token id near 2^62", "{\"input_ids\": [4611686018427387904]}\n", "prompts.jsonl:1"},
		{"prompts: negative token id", "{\"input_ids\": [-1]}\n", "prompts.jsonl:1"},
		{"prompts: empty input_ids", "{\"input_ids\": []}\n", "prompts.jsonl:1"},
		{"prompts: empty file", "", ""},
		{"prompts: prompt longer than the context", "{\"prompt\": \"" + strings.Repeat("word ", 3000) + "\"}\n", "prompts.jsonl:1"},
	} {
		p := h.write1("data/prompts.jsonl", c.body)
		args := []string{"generate", "--model", h.policy, "--prompts", p, "--max-new-tokens", "4", "--out", h.path("data/gen.jsonl")}
		r := h.exec(time.Minute, args...)
		var verdict, note string
		if c.want == "" {
			// An empty file: nothing to do is correct, an error naming it too.
			if r.exit == 0 || r.exit == 1 && strings.Contains(r.stderr, "prompts.jsonl") {
				verdict = "ok"
			} else {
				verdict, note = expectError(r, "prompts.jsonl")
			}
		} else {
			verdict, note = expectError(r, c.want)
		}
		h.add(c.name, args, r, verdict, note)
	}
	// score --input
	for _, c := range []struct{ name, body, want string }{
		{"score: missing response", "{\"prompt\": \"hi\"}\n", "score.jsonl:1"},
		{"score: bad UTF-8", "{\"prompt\": \"hi\", \"response\": \"\xc3\x28\"}\n", "score.jsonl:1"},
		{"score: invalid JSON", "not json\n", "score.jsonl:1"},
		{"score: token id near 2^31", "{\"input_ids\": [2147483647]}\n", "score.jsonl:1"},
		{"score: 64 MiB line", "{\"prompt\": \"hi\", \"response\": \"" + huge + "\"}\n", "score.jsonl:1"},
	} {
		p := h.write1("data/score.jsonl", c.body)
		args := []string{"score", "--rm", h.rm, "--input", p, "--out", h.path("data/score.out")}
		h.expect(c.name, args, c.want)
	}
	// sft data (data.sft) and preference pairs (data.pairs)
	for _, c := range []struct{ name, key, cmd, body, want string }{
		{"sft data: missing response", "sft", "sft", "{\"prompt\": \"hi\"}\n", "sft.jsonl:1"},
		{"sft data: bad UTF-8", "sft", "sft", "{\"prompt\": \"hi\", \"response\": \"\xff\"}\n", "sft.jsonl:1"},
		{"sft data: invalid JSON on line 3", "sft", "sft", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\", \"response\": \"b\"}\n{\n", "sft.jsonl:3"},
		{"sft data: empty", "sft", "sft", "", "sft.jsonl"},
		{"sft data: 64 MiB line", "sft", "sft", "{\"prompt\": \"a\", \"response\": \"" + huge + "\"}\n", "sft.jsonl:1"},
		{"pairs: missing rejected", "pairs", "train-rm", "{\"prompt\": \"a\", \"chosen\": \"b\"}\n", "pairs.jsonl:1"},
		{"pairs: chosen is a number", "pairs", "train-rm", "{\"prompt\": \"a\", \"chosen\": 1, \"rejected\": \"c\"}\n", "pairs.jsonl:1"},
		{"pairs: bad UTF-8", "pairs", "train-rm", "{\"prompt\": \"a\xfe\", \"chosen\": \"b\", \"rejected\": \"c\"}\n", "pairs.jsonl:1"},
	} {
		p := h.write1("data/"+c.key+".jsonl", c.body)
		cfg := h.write1("data/run.toml", strings.Replace(sftBase, "world = true", "world = true\n"+c.key+" = \""+p+"\"", 1)+
			"\n[train_rm]\nsteps = 2\nbatch = 2\n")
		args := []string{c.cmd, "--config", cfg, "--out", h.path("data/out"), "--max-steps", "1"}
		h.expect(c.name, args, c.want)
		os.RemoveAll(h.path("data/out"))
	}
	// findings (repair reads them back)
	h.findingsCases()
	// probe CSVs
	for _, c := range []struct{ name, body, want string }{
		{"probes CSV: unclosed quote", "Behavior,FunctionalCategory,SemanticCategory,BehaviorID\n\"how to x,standard,chemical,a1\n", "probes.csv"},
		{"probes CSV: bad UTF-8", "Behavior,FunctionalCategory,SemanticCategory,BehaviorID\nhow to \xff,standard,chemical,a1\n", "probes.csv:2"},
		{"probes CSV: missing required column", "FunctionalCategory,SemanticCategory,BehaviorID\nstandard,chemical,a1\n", "Behavior"},
		{"probes CSV: empty file", "", "probes.csv"},
		{"probes CSV: duplicate ids", "Behavior,FunctionalCategory,SemanticCategory,BehaviorID\nhow to x,standard,chemical,a1\nhow to y,standard,chemical,a1\n", "a1"},
		{"probes CSV: 64 MiB field", "Behavior,FunctionalCategory,SemanticCategory,BehaviorID\n" + huge + ",standard,chemical,a1\n", "probes.csv"},
		{"probes CSV: ragged row", "Behavior,FunctionalCategory,SemanticCategory,BehaviorID\nhow to x,standard\n", "probes.csv:2"},
	} {
		p := h.write1("data/probes.csv", c.body)
		args := []string{"probes", "import", "--format", "harmbench", p, "--out", h.path("data/probes.jsonl")}
		r := h.exec(time.Minute, args...)
		verdict, note := expectError(r, c.want)
		if c.name == "probes CSV: duplicate ids" && r.exit == 0 {
			verdict, note = "poor", "duplicate ids accepted"
		}
		if c.name == "probes CSV: 64 MiB field" && r.exit == 0 {
			verdict, note = "poor", "no size limit (a probe longer than the context is skipped later)"
		}
		h.add(c.name, args, r, verdict, note)
	}
	// tokenizer files
	for _, c := range []struct{ name, body, want string }{
		{"tokenizer.json: invalid JSON", "{", "tok.json"},
		{"tokenizer.json: rank near 2^62", `{"model":{"type":"BPE","vocab":{"a":4611686018427387904},"merges":[]}}`, "tok.json"},
		{"tokenizer.json: empty vocab", `{"model":{"type":"BPE","vocab":{},"merges":[]}}`, "tok.json"},
	} {
		p := h.write1("data/tok.json", c.body)
		args := []string{"tokenizer", "encode", "--tokenizer", p}
		c2 := h.cmd(args...)
		c2.Stdin = strings.NewReader("hello\n")
		r := h.execCmd(time.Minute, c2)
		verdict, note := expectError(r, c.want)
		h.add(c.name, args, r, verdict, note)
	}
}

// findingsCases damages a findings file of a real run and feeds it to
// `ares repair`, which must refuse it naming the line.
func (h *harness) findingsCases() {
	out := h.path("findings-run")
	r := h.exec(2*time.Minute, "redteam", "--config", h.rtCfg, "--policy", h.policy, "--rm", h.rm, "--out", out, "--quiet")
	if r.exit != 0 {
		h.add("findings fixture", nil, r, "bad", "redteam failed")
		return
	}
	b, _ := os.ReadFile(filepath.Join(out, "findings.jsonl"))
	// Type A findings (RM-only) make a valid file for `repair --stage rm`;
	// each case then damages it.
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			m["type"] = "A"
			o, _ := json.Marshal(m)
			lines = append(lines, string(o))
		}
	}
	if len(lines) < 3 {
		h.add("findings fixture", nil, r, "bad", "too few findings")
		return
	}
	edit := func(line string, f func(m map[string]any)) string {
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		f(m)
		o, _ := json.Marshal(m)
		return string(o)
	}
	mk := func(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
	cases := []struct{ name, body, want string }{
		{"findings: valid (control)", mk(lines[0], lines[1], lines[2]), ""},
		{"findings: invalid JSON on line 2", mk(lines[0], "{\"type\":", lines[2]), "findings.jsonl:2"},
		{"findings: bad UTF-8", mk(lines[0], strings.Replace(lines[1], "\"prompt\":\"", "\"prompt\":\"\xff", 1)), "findings.jsonl:2"},
		{"findings: missing thresholds", mk(edit(lines[0], func(m map[string]any) { delete(m, "thresholds") })), "thresholds"},
		{"findings: missing probe", mk(edit(lines[0], func(m map[string]any) { delete(m, "probe") })), "findings.jsonl:1"},
		{"findings: unknown type", mk(edit(lines[0], func(m map[string]any) { m["type"] = "Z" })), "findings.jsonl:1"},
		{"findings: harm_rate 7", mk(edit(lines[0], func(m map[string]any) { m["harm_rate"] = 7 })), "findings.jsonl:1"},
		{"findings: schema 99", mk(edit(lines[0], func(m map[string]any) { m["schema"] = 99 })), "schema"},
		{"findings: duplicate probe ids", mk(lines[0], lines[0]), "findings.jsonl:2"},
		{"findings: 64 MiB line", mk(edit(lines[0], func(m map[string]any) { m["run"] = strings.Repeat("r", 64<<20) })), "findings.jsonl:1"},
		{"findings: truncated last line", mk(lines[0], lines[1][:len(lines[1])/2]), "findings.jsonl:2"},
	}
	for _, c := range cases {
		p := h.write1("findings/findings.jsonl", c.body)
		os.Remove(filepath.Join(filepath.Dir(p), "findings.state.json"))
		cfg := h.write1("findings/run.toml", "[models]\npolicy = \""+h.policy+"\"\nrm = \""+h.rm+"\"\n[data]\nworld = true\nfindings = \""+p+"\"\n[rm_repair]\nsteps = 2\nbatch = 4\n[policy_repair]\nsteps = 2\nprompts = 2\ngroup = 2\nupdates_per_batch = 1\n")
		args := []string{"repair", "--config", cfg, "--stage", "rm", "--out", h.path("findings/out"), "--max-steps", "1"}
		r := h.exec(2*time.Minute, args...)
		os.RemoveAll(h.path("findings/out"))
		verdict, note := expectError(r, c.want)
		if c.name == "findings: duplicate probe ids" && r.exit == 0 {
			verdict, note = "poor", "duplicates accepted (the same probe may be drawn twice; not flagged)"
		}
		if c.want == "" {
			verdict, note = "ok", "a valid file is repaired"
			if r.exit != 0 {
				verdict, note = "bad", "the valid control file fails"
			}
		}
		h.add(c.name, args, r, verdict, note)
	}
}

// ---- model directories -------------------------------------------------------------

func copyDir(src, dst string) {
	os.MkdirAll(dst, 0o755)
	es, _ := os.ReadDir(src)
	for _, e := range es {
		if e.IsDir() {
			copyDir(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
			continue
		}
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
}

// safetensors edits the header of dir/model.safetensors with f.
func editSafetensors(path string, f func(h map[string]json.RawMessage)) {
	b, _ := os.ReadFile(path)
	n := binary.LittleEndian.Uint64(b[:8])
	var hdr map[string]json.RawMessage
	json.Unmarshal(b[8:8+n], &hdr)
	data := b[8+n:]
	f(hdr)
	nh, _ := json.Marshal(hdr)
	for len(nh)%8 != 0 {
		nh = append(nh, ' ')
	}
	out := make([]byte, 8, 8+len(nh)+len(data))
	binary.LittleEndian.PutUint64(out, uint64(len(nh)))
	out = append(append(out, nh...), data...)
	os.WriteFile(path, out, 0o644)
}

// dropTensor rewrites a safetensors file without the first tensor whose
// name contains sub, the other tensors' data packed again: a well-formed
// file that lacks one tensor.
func dropTensor(path, sub string) {
	b, _ := os.ReadFile(path)
	n := binary.LittleEndian.Uint64(b[:8])
	var hdr map[string]json.RawMessage
	json.Unmarshal(b[8:8+n], &hdr)
	data := b[8+n:]
	drop := firstTensor(hdr, sub)
	type ent struct {
		name       string
		begin, end int64
		e          map[string]any
	}
	var es []ent
	for k, v := range hdr {
		if k == "__metadata__" || k == drop {
			continue
		}
		var e map[string]any
		json.Unmarshal(v, &e)
		off := e["data_offsets"].([]any)
		es = append(es, ent{k, int64(off[0].(float64)), int64(off[1].(float64)), e})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].begin < es[j].begin })
	var nd []byte
	nh := map[string]json.RawMessage{}
	if m, ok := hdr["__metadata__"]; ok {
		nh["__metadata__"] = m
	}
	for _, e := range es {
		start := int64(len(nd))
		nd = append(nd, data[e.begin:e.end]...)
		e.e["data_offsets"] = []int64{start, int64(len(nd))}
		nh[e.name], _ = json.Marshal(e.e)
	}
	hb, _ := json.Marshal(nh)
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	out := make([]byte, 8, 8+len(hb)+len(nd))
	binary.LittleEndian.PutUint64(out, uint64(len(hb)))
	os.WriteFile(path, append(append(out, hb...), nd...), 0o644)
}

func firstTensor(hdr map[string]json.RawMessage, sub string) string {
	var names []string
	for k := range hdr {
		if k != "__metadata__" && strings.Contains(k, sub) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func (h *harness) modelCases() {
	prompts := h.write1("models/prompts.jsonl", `{"prompt": "hello"}`+"\n")
	cfgJSON, _ := os.ReadFile(filepath.Join(h.policy, "config.json"))
	setCfg := func(key string, v any) func(dir string) {
		return func(dir string) {
			var m map[string]any
			json.Unmarshal(cfgJSON, &m)
			if v == nil {
				delete(m, key)
			} else {
				m[key] = v
			}
			b, _ := json.Marshal(m)
			os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
		}
	}
	st := func(dir string) string { return filepath.Join(dir, "model.safetensors") }
	cases := []struct {
		name   string
		damage func(dir string)
		want   []string
	}{
		{"no config.json", func(d string) { os.Remove(filepath.Join(d, "config.json")) }, []string{"config.json"}},
		{"config.json invalid JSON", func(d string) { os.WriteFile(filepath.Join(d, "config.json"), []byte("{"), 0o644) }, []string{"config.json"}},
		{"config.json unknown model_type", setCfg("model_type", "mamba9"), []string{"mamba9"}},
		{"config.json vocab_size 0", setCfg("vocab_size", 0), []string{"vocab_size"}},
		{"config.json hidden_size -32", setCfg("hidden_size", -32), []string{"hidden_size"}},
		{"config.json hidden_size 1e12", setCfg("hidden_size", 1e12), []string{"hidden_size"}},
		{"config.json num_hidden_layers 1e9", setCfg("num_hidden_layers", 1e9), []string{"num_hidden_layers"}},
		{"config.json heads do not divide hidden", setCfg("num_attention_heads", 7), []string{"num_attention_heads"}},
		{"config.json rms_norm_eps nan-like string", setCfg("rms_norm_eps", "nan"), []string{"rms_norm_eps"}},
		{"config.json vocab_size larger than the tensors", setCfg("vocab_size", 100000), []string{"model.safetensors"}},
		{"no weights file", func(d string) { os.Remove(st(d)) }, []string{"safetensors"}},
		{"weights truncated to half", func(d string) {
			b, _ := os.ReadFile(st(d))
			os.WriteFile(st(d), b[:len(b)/2], 0o644)
		}, []string{"model.safetensors"}},
		{"weights truncated to 5 bytes", func(d string) { os.WriteFile(st(d), []byte("abcde"), 0o644) }, []string{"model.safetensors"}},
		{"header length 2^60", func(d string) {
			b, _ := os.ReadFile(st(d))
			binary.LittleEndian.PutUint64(b[:8], 1<<60)
			os.WriteFile(st(d), b, 0o644)
		}, []string{"model.safetensors"}},
		{"header not JSON", func(d string) {
			b, _ := os.ReadFile(st(d))
			b[8] = '!'
			os.WriteFile(st(d), b, 0o644)
		}, []string{"model.safetensors"}},
		{"missing tensor", func(d string) { dropTensor(st(d), "layers.0.mlp.up_proj") }, []string{"up_proj"}},
		{"tensor of the wrong shape", func(d string) {
			editSafetensors(st(d), func(hd map[string]json.RawMessage) {
				n := firstTensor(hd, "norm.weight")
				var e map[string]any
				json.Unmarshal(hd[n], &e)
				sh := e["shape"].([]any)
				off := e["data_offsets"].([]any)
				e["shape"] = []any{sh[0].(float64) / 2, 2}
				e["data_offsets"] = off
				hd[n], _ = json.Marshal(e)
			})
		}, []string{"norm.weight"}},
		{"tensor offsets past the end", func(d string) {
			editSafetensors(st(d), func(hd map[string]json.RawMessage) {
				n := firstTensor(hd, "norm.weight")
				var e map[string]any
				json.Unmarshal(hd[n], &e)
				off := e["data_offsets"].([]any)
				e["data_offsets"] = []any{off[0], 1e12}
				hd[n], _ = json.Marshal(e)
			})
		}, []string{"model.safetensors"}},
		{"tensor of dtype I64 where F32 is expected", func(d string) {
			editSafetensors(st(d), func(hd map[string]json.RawMessage) {
				n := firstTensor(hd, "norm.weight")
				var e map[string]any
				json.Unmarshal(hd[n], &e)
				e["dtype"] = "I64"
				sh := e["shape"].([]any)
				e["shape"] = []any{sh[0].(float64) / 2}
				hd[n], _ = json.Marshal(e)
			})
		}, []string{"norm.weight"}},
		{"extra unexpected tensor", func(d string) {
			editSafetensors(st(d), func(hd map[string]json.RawMessage) {
				hd["model.layers.0.mystery.weight"] = hd[firstTensor(hd, "norm.weight")]
			})
		}, []string{"mystery"}},
		{"no tokenizer.json", func(d string) { os.Remove(filepath.Join(d, "tokenizer.json")) }, []string{"tokenizer.json"}},
		{"tokenizer.json invalid", func(d string) { os.WriteFile(filepath.Join(d, "tokenizer.json"), []byte("[]"), 0o644) }, []string{"tokenizer.json"}},
		{"adapter dir whose base does not exist", func(d string) { adapterDir(d, "/nonexistent/base", "q_proj", true) }, []string{"/nonexistent/base"}},
		{"adapter dir with a module the base lacks", func(d string) { adapterDir(d, h.policy, "c_attn", true) }, []string{"c_attn"}},
		{"adapter dir with no adapter weights", func(d string) { adapterDir(d, h.policy, "q_proj", false) }, []string{"adapter_model"}},
	}
	for i, c := range cases {
		dir := h.path("models", fmt.Sprintf("m%02d", i))
		copyDir(h.policy, dir)
		c.damage(dir)
		args := []string{"generate", "--model", dir, "--prompts", prompts, "--max-new-tokens", "4", "--out", h.path("models/out.jsonl")}
		h.expect(c.name, args, c.want...)
	}
}

// ---- checkpoints ----------------------------------------------------------------------

func listCkpts(dir string) []string {
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

func largestFile(dir string) string {
	es, _ := os.ReadDir(dir)
	best, size := "", int64(-1)
	for _, e := range es {
		if fi, err := e.Info(); err == nil && !e.IsDir() && fi.Size() > size && e.Name() != "manifest.json" {
			best, size = filepath.Join(dir, e.Name()), fi.Size()
		}
	}
	return best
}

func (h *harness) checkpointCases() {
	// A reference run of 8 steps, and a run stopped at step 6 whose newest
	// checkpoint is then damaged; resume must fall back past it, say why,
	// and still end equal to the reference.
	ref := h.path("ck-ref")
	if r := h.exec(2*time.Minute, "sft", "--config", h.sftCfg, "--out", ref); r.exit != 0 {
		h.add("checkpoint reference run", nil, r, "bad", "")
		return
	}
	refFinal := listCkpts(filepath.Join(ref, "checkpoints", "sft"))
	damages := []struct {
		name   string
		damage func(ck string)
	}{
		{"flipped byte in the newest checkpoint's data", func(ck string) {
			f := largestFile(ck)
			b, _ := os.ReadFile(f)
			b[len(b)/2] ^= 0x40
			os.WriteFile(f, b, 0o644)
		}},
		{"newest checkpoint's data truncated", func(ck string) {
			f := largestFile(ck)
			b, _ := os.ReadFile(f)
			os.WriteFile(f, b[:len(b)/3], 0o644)
		}},
		{"newest checkpoint's manifest deleted", func(ck string) { os.Remove(filepath.Join(ck, "manifest.json")) }},
		{"newest checkpoint's manifest not JSON", func(ck string) {
			os.WriteFile(filepath.Join(ck, "manifest.json"), []byte("{\"step\": "), 0o644)
		}},
		{"flipped digit in the manifest's step", func(ck string) {
			p := filepath.Join(ck, "manifest.json")
			b, _ := os.ReadFile(p)
			b = regexp.MustCompile(`"step":\s*6`).ReplaceAll(b, []byte(`"step": 4`))
			os.WriteFile(p, b, 0o644)
		}},
		{"newest checkpoint's data file deleted", func(ck string) { os.Remove(largestFile(ck)) }},
		{"newest checkpoint emptied", func(ck string) {
			es, _ := os.ReadDir(ck)
			for _, e := range es {
				os.Remove(filepath.Join(ck, e.Name()))
			}
		}},
	}
	for i, d := range damages {
		out := h.path(fmt.Sprintf("ck-%d", i))
		if r := h.exec(2*time.Minute, "sft", "--config", h.sftCfg, "--out", out, "--max-steps", "6"); r.exit != 0 {
			h.add(d.name, nil, r, "bad", "first half failed")
			continue
		}
		cks := listCkpts(filepath.Join(out, "checkpoints", "sft"))
		newest := cks[len(cks)-1]
		d.damage(newest)
		vargs := []string{"ckpt", "verify", newest}
		vr := h.exec(time.Minute, vargs...)
		verdict, note := expectError(vr, filepath.Base(newest))
		h.add(d.name+": ckpt verify", vargs, vr, verdict, note)
		args := []string{"sft", "--config", h.sftCfg, "--out", out, "--resume"}
		r := h.exec(2*time.Minute, args...)
		final := listCkpts(filepath.Join(out, "checkpoints", "sft"))
		verdict, note = "ok", "fell back and finished equal to the reference"
		switch {
		case r.exit != 0:
			verdict, note = "bad", "resume failed"
		case !strings.Contains(r.stderr, filepath.Base(newest)):
			verdict, note = "poor", "no message naming the skipped checkpoint (without a manifest it is taken for an unfinished save)"
		}
		if r.exit == 0 {
			dr := h.exec(time.Minute, "ckpt", "diff", refFinal[len(refFinal)-1], final[len(final)-1])
			if dr.exit != 0 {
				verdict, note = "bad", "final weights differ from the uninterrupted run"
			}
		}
		h.add(d.name+": sft --resume", args, r, verdict, note)
	}
}

// ---- signals -------------------------------------------------------------------------

// waitLines waits until path has at least n lines (or the process ended).
func waitLines(path string, n int, done <-chan struct{}, limit time.Duration) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if b, err := os.ReadFile(path); err == nil && bytes.Count(b, []byte("\n")) >= n {
			return true
		}
		select {
		case <-done:
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return false
}

// interrupt starts args, waits until file has n lines plus a random delay,
// sends sig, and returns the run.
func (h *harness) interrupt(args []string, file string, n int, delay time.Duration, sig syscall.Signal) run {
	return h.signalled(args, func(c *exec.Cmd, done <-chan struct{}) {
		waitLines(file, n, done, 2*time.Minute)
		time.Sleep(delay)
		c.Process.Signal(sig)
	})
}

// signalled starts args, runs send (which signals the process, or not) while
// it runs, then waits for it to end (killing it after two minutes) and
// returns the run. done closes when the process has ended.
func (h *harness) signalled(args []string, send func(c *exec.Cmd, done <-chan struct{})) run {
	c := h.cmd(args...)
	var so, se bytes.Buffer
	c.Stdout, c.Stderr = &so, &se
	if err := c.Start(); err != nil {
		return run{exit: -1, stderr: err.Error()}
	}
	done := make(chan struct{})
	var werr error
	go func() { werr = c.Wait(); close(done) }()
	send(c, done)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		c.Process.Kill()
		<-done
	}
	return run{exit: exitCode(werr), stdout: so.String(), stderr: se.String()}
}

// interruptWhen starts args, polls ready(pid) every millisecond, sends sig
// once it holds, and returns the run (sent or not: a run that ended first
// is returned as it ended).
func (h *harness) interruptWhen(args []string, ready func(pid int) bool, sig syscall.Signal) run {
	return h.signalled(args, func(c *exec.Cmd, done <-chan struct{}) {
		end := time.Now().Add(2 * time.Minute)
		for time.Now().Before(end) {
			select {
			case <-done:
				return
			default:
			}
			if ready(c.Process.Pid) {
				c.Process.Signal(sig)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}

const sftLong = `[run]
seed = 3
checkpoint_every = 5
keep_last = 3

[data]
world = true

[sft]
steps = 60
batch = 4
lr = 3e-3
warmup = 2
`

func (h *harness) signalCases() {
	cfg := h.write1("sig/sft.toml", sftLong)
	ref := h.path("sig/ref")
	if r := h.exec(3*time.Minute, "sft", "--config", cfg, "--out", ref); r.exit != 0 {
		h.add("signals reference", nil, r, "bad", "")
		return
	}
	refCk := listCkpts(filepath.Join(ref, "checkpoints", "sft"))
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		out := h.path(fmt.Sprintf("sig/sft-%d", i))
		args := []string{"sft", "--config", cfg, "--out", out}
		r := h.interrupt(args, filepath.Join(out, "metrics-sft.jsonl"), 10, 0, sig)
		want := 128 + int(sig)
		verdict, note := "ok", ""
		if r.exit != want {
			verdict, note = "bad", fmt.Sprintf("exit %d, want %d", r.exit, want)
		} else if !strings.Contains(r.stderr, "--resume") {
			verdict, note = "poor", "no word on how to resume"
		}
		rr := h.exec(3*time.Minute, append(args, "--resume")...)
		fin := listCkpts(filepath.Join(out, "checkpoints", "sft"))
		if rr.exit != 0 || len(fin) == 0 || h.exec(time.Minute, "ckpt", "diff", refCk[len(refCk)-1], fin[len(fin)-1]).exit != 0 {
			verdict, note = "bad", "resume did not end equal to the uninterrupted run"
		} else if verdict == "ok" {
			note = "checkpoint written; resume ends bit-identical"
		}
		h.add(sig.String()+" during sft", args, r, verdict, note)
	}
	// Red-teaming: SIGINT and SIGTERM, then --resume; findings must equal
	// those of an uninterrupted run.
	rtCfg := h.write1("sig/rt.toml", strings.Replace(rtBase, "budget = 48", "budget = 320", 1))
	rtRef := h.path("sig/rt-ref")
	if r := h.exec(3*time.Minute, "redteam", "--config", rtCfg, "--policy", h.policy, "--rm", h.rm, "--out", rtRef, "--quiet"); r.exit != 0 {
		h.add("red-team reference", nil, r, "bad", "")
		return
	}
	refFindings, _ := os.ReadFile(filepath.Join(rtRef, "findings.jsonl"))
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		out := h.path(fmt.Sprintf("sig/rt-%d", i))
		args := []string{"redteam", "--config", rtCfg, "--policy", h.policy, "--rm", h.rm, "--out", out, "--quiet"}
		r := h.interrupt(args, filepath.Join(out, "findings.jsonl"), 20, 0, sig)
		want := 128 + int(sig)
		verdict, note := "ok", ""
		if r.exit != want {
			verdict, note = "bad", fmt.Sprintf("exit %d, want %d", r.exit, want)
		}
		rr := h.exec(3*time.Minute, append(args, "--resume")...)
		got, _ := os.ReadFile(filepath.Join(out, "findings.jsonl"))
		if rr.exit != 0 || !bytes.Equal(normFindings(got), normFindings(refFindings)) {
			verdict, note = "bad", "resume did not give the uninterrupted run's findings"
		} else if verdict == "ok" {
			note = "state saved; resume gives the same findings"
		}
		h.add(sig.String()+" during redteam", args, r, verdict, note)
	}
	// Repair: SIGINT during the RM stage with the findings of a run.
	h.repairSignal()
	// A signal before the training loop starts (models and data loading).
	h.loadingSignals(cfg, refCk, rtCfg, refFindings)
}

// loadingSignals sends SIGINT to sft, and SIGTERM to redteam, as soon as
// the run's first output exists, while it still builds its data and loads
// its models: the run must stop cleanly (128+n, a message saying so),
// leave only checkpoints that verify, and a resume (or, with nothing
// saved, a rerun) must end equal to the uninterrupted run.
func (h *harness) loadingSignals(cfg string, refCk []string, rtCfg string, refFindings []byte) {
	out := h.path("sig/load-sft")
	args := []string{"sft", "--config", cfg, "--out", out}
	r := h.interrupt(args, filepath.Join(out, "config.resolved.toml"), 0, 0, syscall.SIGINT)
	verdict, note := "ok", ""
	switch {
	case r.exit != 130:
		verdict, note = "bad", fmt.Sprintf("exit %d, want 130", r.exit)
	case !strings.Contains(r.stderr, "SIGINT"):
		verdict, note = "bad", "killed at once: no message, nothing said about what was saved"
	}
	cks := listCkpts(filepath.Join(out, "checkpoints", "sft"))
	for _, ck := range cks {
		if h.exec(time.Minute, "ckpt", "verify", ck).exit != 0 {
			verdict, note = "bad", "left a checkpoint that does not verify: "+filepath.Base(ck)
		}
	}
	rargs := args
	if len(cks) > 0 {
		rargs = append(append([]string{}, args...), "--resume")
	}
	rr := h.exec(3*time.Minute, rargs...)
	fin := listCkpts(filepath.Join(out, "checkpoints", "sft"))
	if rr.exit != 0 || len(fin) == 0 || h.exec(time.Minute, "ckpt", "diff", refCk[len(refCk)-1], fin[len(fin)-1]).exit != 0 {
		verdict, note = "bad", fmt.Sprintf("the run after it (exit %d) did not end equal to the uninterrupted run: %s", rr.exit, rr.first())
	} else if verdict == "ok" {
		then := "a rerun"
		if len(cks) > 0 {
			then = "--resume"
		}
		note = fmt.Sprintf("stopped cleanly with %d checkpoint(s) that verify; %s ends bit-identical", len(cks), then)
	}
	h.add("SIGINT while sft loads (before its first step)", args, r, verdict, note)

	// Red-teaming writes nothing before its models are loaded. The policy's
	// config.json is a FIFO here: the run blocks reading it, the signal
	// goes then, and the file's bytes follow; afterwards it is a plain file
	// again for the run after it.
	out = h.path("sig/load-rt")
	pol := h.path("sig/fifo-policy")
	copyDir(h.policy, pol)
	cfgPath := filepath.Join(pol, "config.json")
	cfgJSON, _ := os.ReadFile(cfgPath)
	os.Remove(cfgPath)
	if err := syscall.Mkfifo(cfgPath, 0o644); err != nil {
		h.add("SIGTERM while redteam loads (before its first round)", nil, run{exit: -1, stderr: err.Error()}, "bad", "no FIFO")
		return
	}
	args = []string{"redteam", "--config", rtCfg, "--policy", pol, "--rm", h.rm, "--out", out, "--quiet"}
	stop := make(chan struct{})
	fed := make(chan struct{})
	var waiting *os.File
	r = h.interruptWhen(args, func(pid int) bool {
		// A write end opens only once the run has opened the read end.
		f, err := os.OpenFile(cfgPath, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return false
		}
		waiting = f
		go func() { // after the signal: the bytes, then any later read
			defer close(fed)
			time.Sleep(50 * time.Millisecond)
			waiting.Write(cfgJSON)
			waiting.Close()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if f, err := os.OpenFile(cfgPath, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Write(cfgJSON)
					f.Close()
				}
			}
		}()
		return true
	}, syscall.SIGTERM)
	close(stop)
	if waiting != nil {
		<-fed
	}
	os.Remove(cfgPath)
	os.WriteFile(cfgPath, cfgJSON, 0o644)
	verdict, note = "ok", ""
	switch {
	case r.exit != 143:
		verdict, note = "bad", fmt.Sprintf("exit %d, want 143", r.exit)
	case !strings.Contains(r.stderr, "SIGTERM"):
		verdict, note = "bad", "killed at once: no message, nothing said about what was saved"
	}
	rargs = args
	if _, err := os.Stat(filepath.Join(out, "findings.state.json")); err == nil {
		rargs = append(append([]string{}, args...), "--resume")
	}
	rr = h.exec(3*time.Minute, rargs...)
	got, _ := os.ReadFile(filepath.Join(out, "findings.jsonl"))
	if rr.exit != 0 || !bytes.Equal(normFindings(got), normFindings(refFindings)) {
		verdict, note = "bad", fmt.Sprintf("the run after it (exit %d) did not give the uninterrupted run's findings: %s", rr.exit, rr.first())
	} else if verdict == "ok" {
		note = "stopped cleanly; the run after it gives the same findings"
	}
	h.add("SIGTERM while redteam loads (before its first round)", args, r, verdict, note)
}

// normFindings drops what legitimately differs between runs (none today;
// kept as the place to say so) and returns the findings bytes.
func normFindings(b []byte) []byte { return b }

// repairSignal interrupts `ares repair --stage rm` on the findings of the
// fixture run, turned into Type A findings, and resumes it.
func (h *harness) repairSignal() {
	b, err := os.ReadFile(h.path("findings-run", "findings.jsonl"))
	if err != nil {
		return
	}
	var ls []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		m["type"] = "A"
		o, _ := json.Marshal(m)
		ls = append(ls, string(o))
	}
	f := h.write1("sigrep/findings.jsonl", strings.Join(ls, "\n")+"\n")
	body := "[run]\ncheckpoint_every = 5\n[models]\npolicy = \"" + h.policy + "\"\nrm = \"" + h.rm + "\"\n[data]\nworld = true\nfindings = \"" + f + "\"\n[rm_repair]\nsteps = 60\nbatch = 4\nanchor_size = 8\nanchor_batch = 4\n"
	cfg := h.write1("sigrep/run.toml", body)
	ref := h.path("sigrep/ref")
	rr := h.exec(3*time.Minute, "repair", "--config", cfg, "--stage", "rm", "--out", ref)
	args := []string{"repair", "--config", cfg, "--stage", "rm", "--out", h.path("sigrep/b")}
	if rr.exit != 0 {
		h.add("SIGINT during repair", args, rr, "poor", "could not set up a repair run on crafted findings: "+rr.first())
		return
	}
	r := h.interrupt(args, h.path("sigrep/b/metrics-rm-repair.jsonl"), 10, 0, syscall.SIGINT)
	verdict, note := "ok", "checkpoint written; resume ends bit-identical"
	if r.exit != 130 {
		verdict, note = "bad", fmt.Sprintf("exit %d, want 130", r.exit)
	}
	res := h.exec(3*time.Minute, append(args, "--resume")...)
	a := listCkpts(filepath.Join(ref, "checkpoints", "rm-repair"))
	bb := listCkpts(h.path("sigrep/b/checkpoints/rm-repair"))
	if res.exit != 0 || len(a) == 0 || len(bb) == 0 || h.exec(time.Minute, "ckpt", "diff", a[len(a)-1], bb[len(bb)-1]).exit != 0 {
		verdict, note = "bad", fmt.Sprintf("resume (exit %d) did not end equal to the uninterrupted run: %s", res.exit, res.first())
	}
	h.add("SIGINT during repair (rm stage)", args, r, verdict, note)
}

// ---- kill -9 ----------------------------------------------------------------------------

func (h *harness) killCases(n int) func() {
	return func() {
		cfg := h.write1("kill/sft.toml", sftLong)
		ref := h.path("kill/ref")
		rref := h.exec(3*time.Minute, "sft", "--config", cfg, "--out", ref)
		if rref.exit != 0 {
			h.add("kill reference", nil, rref, "bad", "")
			return
		}
		refCk := listCkpts(filepath.Join(ref, "checkpoints", "sft"))
		for i := 0; i < n; i++ {
			out := h.path(fmt.Sprintf("kill/sft-%02d", i))
			args := []string{"sft", "--config", cfg, "--out", out}
			// A random moment: after 1 to 55 metrics lines, plus up to 40 ms
			// (inside a step or a checkpoint save).
			lines := 1 + h.rng.Intn(55)
			delay := time.Duration(h.rng.Intn(40)) * time.Millisecond
			r := h.interrupt(args, filepath.Join(out, "metrics-sft.jsonl"), lines, delay, syscall.SIGKILL)
			rargs := append(append([]string{}, args...), "--resume")
			if !hasCompleteCheckpoint(filepath.Join(out, "checkpoints", "sft")) {
				// Killed before the first checkpoint was complete: --resume
				// says "no complete checkpoint"; the user starts again.
				if rr := h.exec(time.Minute, rargs...); rr.exit != 1 || !strings.Contains(rr.stderr, "no complete checkpoint") {
					h.add(fmt.Sprintf("kill -9 during sft #%d: --resume with no checkpoint", i+1), rargs, rr, "poor", "unclear refusal")
				}
				rargs = args
			}
			rr := h.exec(3*time.Minute, rargs...)
			fin := listCkpts(filepath.Join(out, "checkpoints", "sft"))
			verdict, note := "ok", fmt.Sprintf("killed after %d steps + %v; resume bit-identical", lines, delay)
			if rr.exit != 0 || len(fin) == 0 || h.exec(time.Minute, "ckpt", "diff", refCk[len(refCk)-1], fin[len(fin)-1]).exit != 0 {
				verdict, note = "bad", fmt.Sprintf("killed after %d steps + %v; resume exit %d: %s", lines, delay, rr.exit, rr.first())
			}
			if r.exit == 0 {
				note = "finished before the kill; " + note
			}
			h.add(fmt.Sprintf("kill -9 during sft #%d", i+1), args, r, verdict, note)
		}
		rtCfg := h.write1("kill/rt.toml", strings.Replace(rtBase, "budget = 48", "budget = 320", 1))
		rtRef := h.path("kill/rt-ref")
		if r := h.exec(3*time.Minute, "redteam", "--config", rtCfg, "--policy", h.policy, "--rm", h.rm, "--out", rtRef, "--quiet"); r.exit != 0 {
			h.add("kill red-team reference", nil, r, "bad", "")
			return
		}
		refFindings, _ := os.ReadFile(filepath.Join(rtRef, "findings.jsonl"))
		for i := 0; i < n; i++ {
			out := h.path(fmt.Sprintf("kill/rt-%02d", i))
			args := []string{"redteam", "--config", rtCfg, "--policy", h.policy, "--rm", h.rm, "--out", out, "--quiet"}
			lines := h.rng.Intn(150)
			delay := time.Duration(h.rng.Intn(60)) * time.Millisecond
			r := h.interrupt(args, filepath.Join(out, "findings.jsonl"), lines, delay, syscall.SIGKILL)
			rargs := append(append([]string{}, args...), "--resume")
			if _, err := os.Stat(filepath.Join(out, "findings.state.json")); err != nil {
				rargs = args // killed before the first state: start again
			}
			rr := h.exec(3*time.Minute, rargs...)
			got, _ := os.ReadFile(filepath.Join(out, "findings.jsonl"))
			verdict, note := "ok", fmt.Sprintf("killed after %d findings + %v; resume gives the same findings", lines, delay)
			if rr.exit != 0 || !bytes.Equal(got, refFindings) {
				verdict, note = "bad", fmt.Sprintf("killed after %d findings + %v; resume exit %d (%s), findings equal: %v", lines, delay, rr.exit, rr.first(), bytes.Equal(got, refFindings))
			}
			if r.exit == 0 {
				note = "finished before the kill; " + note
			}
			h.add(fmt.Sprintf("kill -9 during redteam #%d", i+1), args, r, verdict, note)
		}
	}
}

// hasCompleteCheckpoint: a checkpoint directory of dir has its manifest.
func hasCompleteCheckpoint(dir string) bool {
	for _, ck := range listCkpts(dir) {
		if _, err := os.Stat(filepath.Join(ck, "manifest.json")); err == nil {
			return true
		}
	}
	return false
}

// ---- disk full --------------------------------------------------------------------------

func (h *harness) diskFullCases() {
	// ulimit -f caps the size of any file the process writes (in 1 KiB
	// blocks); Go ignores SIGXFSZ, so the write fails with EFBIG, as on a
	// full disk. The limit is chosen so that the first checkpoints fit and a
	// later one does not.
	cfg := h.write1("disk/sft.toml", sftLong)
	for _, kb := range []int{64, 256, 1024} {
		out := h.path(fmt.Sprintf("disk/sft-%d", kb))
		args := []string{"sft", "--config", cfg, "--out", out}
		c := exec.Command("bash", "-c", fmt.Sprintf("ulimit -f %d; exec \"$0\" \"$@\"", kb), h.ares)
		c.Args = append(c.Args, args...)
		c.Env = append(os.Environ(), "ARES_NUM_THREADS=1")
		r := h.execCmd(3*time.Minute, c)
		verdict, note := "ok", ""
		switch {
		case r.exit == 0:
			note = "everything fit under the limit"
		case r.exit != 1:
			verdict, note = "bad", fmt.Sprintf("exit %d", r.exit)
		case !strings.Contains(strings.ToLower(r.stderr), "file too large") && !strings.Contains(strings.ToLower(r.stderr), "no space"):
			verdict, note = "poor", "the message does not say the write failed for lack of space"
		}
		// Every checkpoint left behind must verify.
		var bad []string
		for _, ck := range listCkpts(filepath.Join(out, "checkpoints", "sft")) {
			if h.exec(time.Minute, "ckpt", "verify", ck).exit != 0 {
				bad = append(bad, filepath.Base(ck))
			}
		}
		if len(bad) > 0 {
			verdict, note = "bad", "checkpoints left that do not verify: "+strings.Join(bad, " ")
		} else if note == "" {
			note = fmt.Sprintf("stopped with an error; the %d checkpoints left all verify", len(listCkpts(filepath.Join(out, "checkpoints", "sft"))))
		}
		h.add(fmt.Sprintf("file size limit %d KiB during sft", kb), append([]string{"(ulimit -f " + fmt.Sprint(kb) + ")"}, args...), r, verdict, note)
	}
}

// ---- the table --------------------------------------------------------------------------

func (h *harness) write(path string, took time.Duration, seed int64, kills int) error {
	var b strings.Builder
	host, _ := os.Hostname()
	cpu := measure.CPUModel()
	fmt.Fprintf(&b, "# Reliability under bad input, faults and interruption\n\n")
	fmt.Fprintf(&b, "Every case runs the real CLI (`bin/ares`) on tiny models of the synthetic world and ends as\n"+
		"**ok** (a clear error naming the place and the cause, or correct behaviour with nothing lost),\n"+
		"**poor** (the right outcome, an unclear message) or **bad** (silent acceptance, a crash, lost or\n"+
		"different work). Generated %s on %s (%s, %d CPUs, GOMAXPROCS %d, ARES_NUM_THREADS=1), %d cases in %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), host, cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0), len(h.results), took.Round(time.Second))
	fmt.Fprintf(&b, "Reproduce: `make ares && go run ./bench/reliability -seed %d -kills %d`\n\n", seed, kills)
	type count struct{ ok, poor, bad int }
	var order []string
	counts := map[string]*count{}
	for _, r := range h.results {
		c := counts[r.Class]
		if c == nil {
			c = &count{}
			counts[r.Class] = c
			order = append(order, r.Class)
		}
		switch r.Verdict {
		case "ok":
			c.ok++
		case "poor":
			c.poor++
		default:
			c.bad++
		}
	}
	fmt.Fprintf(&b, "## Summary\n\n| class | cases | ok | poor | bad |\n|---|---:|---:|---:|---:|\n")
	var tot count
	for _, k := range order {
		c := counts[k]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", k, c.ok+c.poor+c.bad, c.ok, c.poor, c.bad)
		tot.ok, tot.poor, tot.bad = tot.ok+c.ok, tot.poor+c.poor, tot.bad+c.bad
	}
	fmt.Fprintf(&b, "| **all** | %d | %d | %d | %d |\n\n", tot.ok+tot.poor+tot.bad, tot.ok, tot.poor, tot.bad)
	for _, k := range order {
		fmt.Fprintf(&b, "## %s\n\n| case | command | exit | first line of stderr | verdict | note |\n|---|---|---:|---|---|---|\n", k)
		for _, r := range h.results {
			if r.Class != k {
				continue
			}
			fmt.Fprintf(&b, "| %s | `%s` | %d | %s | %s | %s |\n", cell(r.Name), cell(r.Cmd), r.Exit, cell(r.Stderr), r.Verdict, cell(r.Note))
		}
		b.WriteString("\n")
	}
	os.MkdirAll(filepath.Dir(path), 0o755)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func cell(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "`", "'")
}

// adapterDir replaces d with a PEFT adapter directory: adapter_config.json of
// a rank-2 LoRA on base targeting target, and, with weights, an empty
// adapter_model.safetensors (an 8-byte header length and "{}" padded).
func adapterDir(d, base, target string, weights bool) {
	os.RemoveAll(d)
	os.MkdirAll(d, 0o755)
	os.WriteFile(filepath.Join(d, "adapter_config.json"), []byte(`{"peft_type":"LORA","base_model_name_or_path":"`+base+`","r":2,"lora_alpha":4,"target_modules":["`+target+`"]}`), 0o644)
	if weights {
		os.WriteFile(filepath.Join(d, "adapter_model.safetensors"), []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '}, 0o644)
	}
}
