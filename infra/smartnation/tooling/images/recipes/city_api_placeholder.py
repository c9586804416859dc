"""A placeholder of ours for the three city APIs until they exist: a static Go HTTP server.

Entrypoint contract (charts/city-api): user 10001:10001; ENTRYPOINT ``/usr/bin/city-api-placeholder``;
listens on ``:$PORT`` (default 8080, the chart's containerPort); ``/healthz/live`` and
``/healthz/ready`` answer 200; every other path answers 503 with a JSON body saying it is a
placeholder, so nothing mistakes it for a working API. It reads nothing else and needs no
writable path. Standard library only: nothing is fetched to build it.
"""

from __future__ import annotations

from pathlib import Path

from smartnation.tooling.images import rootfs
from smartnation.tooling.images.builder import BuildContext, Recipe
from smartnation.tooling.images.oci import ImageConfig
from smartnation.tooling.images.pins import Pins
from smartnation.tooling.images.recipes import labels

UID = 10001
BINARY = "city-api-placeholder"

GO_MOD = "module smartnation.local/city-api-placeholder\n\ngo 1.22\n"
MAIN_GO = """\
// The placeholder of smartnation's city APIs (infra/smartnation/tooling/images/recipes/city_api_placeholder.py).
package main

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\\n"))
	}
	mux.HandleFunc("/healthz/live", ok)
	mux.HandleFunc("/healthz/ready", ok)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"placeholder": true,
			"environment": os.Getenv("SMARTNATION_ENVIRONMENT"),
			"path":        r.URL.Path,
			"message":     "this city API is not deployed yet; smartnation runs a placeholder here",
		})
	})
	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	log.Printf("city-api placeholder listening on :%s", port)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
"""


def recipe(pins: Pins) -> Recipe:
    pin = pins.images["city_api_placeholder"]

    def build(ctx: BuildContext, out: Path) -> None:
        source = ctx.cache.work / "city-api-placeholder-src"
        source.mkdir(parents=True, exist_ok=True)
        (source / "go.mod").write_text(GO_MOD)
        (source / "main.go").write_text(MAIN_GO)
        go = ctx.go_runner()
        ctx.runner.note("building the placeholder API")
        go.run("go-build", ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / BINARY), "."], source)

    def make(ctx: BuildContext, tree: Path) -> list[str]:
        folder = ctx.program(BINARY, {"go.mod": GO_MOD, "main.go": MAIN_GO}, lambda out: build(ctx, out))
        rootfs.install_file(tree, f"usr/bin/{BINARY}", (folder / BINARY).read_bytes(), mode=0o755)
        rootfs.write_accounts(tree, [rootfs.Account("api", UID, "/")])
        rootfs.make_dirs(tree, [("tmp", 0, 0o1777)])
        return []

    return Recipe(
        pin=pin,
        config=ImageConfig(
            user=f"{UID}:{UID}",
            entrypoint=(f"/usr/bin/{BINARY}",),
            env=("PORT=8080",),
            ports=("8080/tcp",),
            labels=labels(pin, pins, BINARY, "infra/smartnation/tooling/images/recipes/city_api_placeholder.py", "")
            | {"org.opencontainers.image.description": "placeholder until the city APIs exist"},
        ),
        make_rootfs=make,
        inputs={"go.mod": GO_MOD, "main.go": MAIN_GO},
        module_file=__file__,
    )
