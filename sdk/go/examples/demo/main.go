// The README's demo: read a value, then print every change under /myapp/database until
// interrupted. Try it against `setpoint dev` and
//
//	curl -X PUT http://localhost:8000/api/config/myapp/database/host -d '{"value": "new-host.internal"}'
//
// Flags -address and -cache override the demo's defaults (the tests run it on a free port).
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	setpoint "github.com/setpoint/setpoint/sdk/go"
)

func main() {
	address := flag.String("address", "localhost:8000", "the edge (setpoint dev) address")
	cache := flag.String("cache", "/tmp/config-cache", "cache file")
	flag.Parse()

	client, err := setpoint.NewClient(*address, setpoint.Options{Environment: "prod", CachePath: *cache})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.WaitReady(ctx); err != nil {
		log.Printf("not synced yet (%v); serving what the cache file holds", err)
	}

	host, err := client.Get("/myapp/database/host")
	switch {
	case errors.Is(err, setpoint.ErrNotFound):
		log.Printf("/myapp/database/host is not set yet")
	case err != nil:
		// Not synced (no edge yet, no cache file) or unauthorized: the watch below still
		// reports changes once the session gets going.
		log.Printf("reading /myapp/database/host: %v", err)
	default:
		log.Printf("database host: %s (v%d)", host, host.Version)
	}

	watch, err := client.Watch("/myapp/database", func(e setpoint.Event) {
		log.Printf("Config changed: %s = %s (v%d)", e.Path, e.Value, e.Version)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer watch.Stop()
	log.Printf("watching /myapp/database")

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
}
