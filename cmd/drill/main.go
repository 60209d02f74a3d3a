// Command drill runs the failover drill (and the scale measurement) of
// issue 20 against a cluster of scripts/cluster; scripts/drill and
// scripts/scale are its entries, which start and stop the cluster.
//
//	drill failover -env DIR/cluster.env [flags]
//	drill scale    -env DIR/cluster.env [flags]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/contractd/contractd/internal/drill"
)

const usage = `usage: drill failover|scale -env CLUSTER_ENV [flags]   (run it through scripts/drill or scripts/scale)`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch os.Args[1] {
	case "failover":
		os.Exit(failover(ctx, os.Args[2:]))
	case "scale":
		os.Exit(scale(ctx, os.Args[2:]))
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}

func failover(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("drill failover", flag.ExitOnError)
	opt := drill.Options{Out: os.Stdout}
	fs.StringVar(&opt.EnvFile, "env", "", "the cluster's cluster.env")
	fs.DurationVar(&opt.Warmup, "warmup", 10*time.Second, "load before replication is frozen")
	fs.DurationVar(&opt.Freeze, "freeze", 2*time.Second, "committing with the walsenders stopped, before the kill")
	fs.DurationVar(&opt.SignLag, "sign-lag", 0, "the user signs contracts pre-signed at least this long before (default freeze + 3s)")
	fs.DurationVar(&opt.AfterResume, "after-resume", 5*time.Second, "load once writes are accepted again")
	fs.IntVar(&opt.Workers, "workers", 4, "pre-signing and signing workers")
	fs.IntVar(&opt.Getters, "getters", 2, "workers reading contracts")
	fs.DurationVar(&opt.FeedInterval, "feed-interval", 200*time.Millisecond, "how often the follower reads the feed")
	fs.DurationVar(&opt.ResumeTimeout, "resume-timeout", 2*time.Minute, "wait for the new leader and for writes")
	fs.DurationVar(&opt.HealTimeout, "heal-timeout", 5*time.Minute, "wait, from the kill, for every signed contract to be signed in contractd")
	_ = fs.Parse(args)
	if opt.EnvFile == "" {
		fmt.Fprintln(os.Stderr, "drill failover: -env is required")
		return 2
	}
	if opt.SignLag == 0 {
		opt.SignLag = opt.Freeze + 3*time.Second
	}
	if opt.Warmup < opt.SignLag+3*time.Second {
		// Otherwise the user signs nothing before the freeze, and no
		// acknowledged notification can be lost.
		fmt.Fprintf(os.Stderr, "drill failover: --warmup (%s) must be at least --sign-lag (%s) + 3s\n", opt.Warmup, opt.SignLag)
		return 2
	}
	res, err := drill.Run(ctx, opt)
	if err != nil {
		fmt.Fprintf(os.Stderr, "drill: %v\n", err)
		return 1
	}
	if len(res.Problems) > 0 {
		return 1
	}
	return 0
}

func scale(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("drill scale", flag.ExitOnError)
	opt := drill.ScaleOptions{Out: os.Stdout}
	fs.StringVar(&opt.EnvFile, "env", "", "the cluster's cluster.env")
	fs.DurationVar(&opt.Phase, "phase", 15*time.Second, "each measured phase")
	fs.IntVar(&opt.Workers, "workers", 8, "pre-signing and signing workers of the notification phase")
	fs.IntVar(&opt.Connections, "connections", 16, "wrk's connections of the GET phase")
	_ = fs.Parse(args)
	if opt.EnvFile == "" {
		fmt.Fprintln(os.Stderr, "drill scale: -env is required")
		return 2
	}
	if err := drill.Scale(ctx, opt); err != nil {
		fmt.Fprintf(os.Stderr, "scale: %v\n", err)
		return 1
	}
	return 0
}
