#!/usr/bin/env bash
# asched's one entry point on a fresh Debian 12 machine:
#   scripts/run.sh demo   install what is missing, build, run the main demo
#   scripts/run.sh test   install what is missing, build, run every test (what CI runs);
#                         as root, last, the demo command in a brand-new Debian 12 root
#                         (ASCHED_SKIP_FRESH_ROOT=1 skips that stage)
#   scripts/run.sh soak   install what is missing, build, run the process and cluster
#                         scenarios' long variants (ASCHED_SOAK=1: R1 for 10 minutes per
#                         broker, 20 kills per R2 fault point, 50 R12 kills, 50 R11 drops,
#                         10 minutes of R11's flaky proxy); not part of the test command,
#                         about 55 minutes
#   scripts/run.sh format rewrite the tree with clang-format (the test command checks it)
#   scripts/run.sh fresh-root
#                         only the test command's last stage: the demo command in a
#                         brand-new Debian 12 root (as root; tests the committed HEAD)
#   scripts/run.sh bench [--quick]
#                         install what is missing (and the npm peers, into a temporary
#                         folder), build, run every benchmark beside its peers, write
#                         bench/results/latest.md, latest.jsonl and chart.png
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
jobs="${ASCHED_JOBS:-2}"

# Everything the library build needs, every backend included (the demo runs on SQLite).
build_packages=(g++ cmake ninja-build ccache pkg-config tzdata
                libasio-dev libhowardhinnant-date-dev libfmt-dev nlohmann-json3-dev
                libsqlite3-dev libhiredis-dev libpq-dev libcli11-dev libhttp-parser-dev
                libmosquitto-dev libmariadb-dev)
# chromium and chromium-driver: the dashboard's test in a real headless browser; spdlog: the
# structured-logging example (optional in a user's build); faketime: R19's run of the tool
# across a daylight-saving night; pgbouncer: R14's broker behind a pooler; mosquitto: the MQTT
# broker's server; mariadb-server: the MariaDB store's server.
test_packages=(libboost-test-dev clang-14 libclang-rt-14-dev clang-format-14 redis-server postgresql
               mosquitto mariadb-server
               debootstrap chromium chromium-driver libspdlog-dev faketime pgbouncer)
bench_packages=(python3 python3-apscheduler gnuplot-nox postgresql libpq-dev mariadb-server)
# The peers, pinned so runs compare like with like.
npm_peers=(croner@11.0.1 cron-parser@5.10.5)

install_missing() {
    local missing=()
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing: ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

configure() { # dir, extra cmake args...
    local dir="$1"; shift
    mkdir -p "$(dirname "$dir")"
    cmake -S "$here" -B "$dir" -G Ninja "$@" > "$dir.configure.log" 2>&1 || {
        cat "$dir.configure.log"; return 1; }
}

format_sources() {
    find include src tests bench examples \( -name '*.cpp' -o -name '*.hpp' \) -print0 | sort -z
}

# The demo command in a brand-new Debian 12 root: debootstrap (minbase) once into a cache
# that is never modified, a copy of it per run, a clone of this repository's HEAD inside, and
# `scripts/run.sh demo` run there with nothing of this machine's packages. Only the compiler
# cache is shared (a bind mount), so a second run does not compile everything again.
fresh_root_demo() {
    local base=/var/cache/asched-debian12-root root log status=0
    install_missing debootstrap git
    if [ ! -x "$base/bin/bash" ]; then
        echo "== making a Debian 12 minbase root once in $base (debootstrap)"
        rm -rf --one-file-system "$base.partial"
        # The mirror this machine's own apt uses: deb822 "URIs:", else a one-line "deb URL".
        local mirror
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
        [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        [ -n "$mirror" ] || { echo "no Debian mirror in this machine's apt sources"; return 1; }
        debootstrap --variant=minbase bookworm "$base.partial" "$mirror" \
            > /tmp/asched-debootstrap.log 2>&1 || { tail -20 /tmp/asched-debootstrap.log; return 1; }
        mv "$base.partial" "$base"
    fi
    root="$(mktemp -d /tmp/asched-fresh-root.XXXXXX)"
    log="$here/build/fresh-root-demo.log"
    fresh_root_cleanup() {
        local m
        for m in root/.cache/ccache dev/pts dev proc; do
            mountpoint -q "$root/$m" && umount "$root/$m"
        done
        findmnt -rn -o TARGET | grep -q "^$root/" || rm -rf --one-file-system "$root"
    }
    # EXIT as well: an interrupted run leaves no mount behind.
    trap fresh_root_cleanup EXIT
    cp -a "$base/." "$root/" || return 1
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
        rm -f "$root/etc/apt/sources.list"
    fi
    cp /etc/resolv.conf "$root/etc/" 2>/dev/null || true
    git clone -q "$here" "$root/root/asched" || return 1
    mkdir -p "$root/proc" "$root/dev" "$root/root/.cache/ccache" "$CCACHE_DIR"
    mount --bind /proc "$root/proc" && mount --bind /dev "$root/dev" &&
        mount --bind /dev/pts "$root/dev/pts" && mount --bind "$CCACHE_DIR" "$root/root/.cache/ccache" ||
        return 1
    echo "== in a new Debian 12 root: scripts/run.sh demo (HEAD $(git -C "$here" rev-parse --short HEAD); log: $log)"
    chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb \
        CCACHE_DIR=/root/.cache/ccache /bin/bash -c "cd /root/asched && scripts/run.sh demo" \
        > "$log" 2>&1 || status=$?
    tail -5 "$log"
    fresh_root_cleanup
    trap - EXIT
    if [ "$status" -ne 0 ] || ! grep -q "asched demo: stopped cleanly" "$log"; then
        echo "== the demo command failed in a fresh Debian 12 root (rc $status)"
        return 1
    fi
    # The demo's Release build is a new user's first screen: it must be as warning-free as the
    # -Werror test build (the compiler cache replays a cached object's warnings too).
    if grep -q "warning:" "$log"; then
        grep -m 20 "warning:" "$log"
        echo "== the demo command's Release build printed warnings (log: $log)"
        return 1
    fi
}

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
# A clone at another path still hits the cache.
export CCACHE_BASEDIR="$here"
export CCACHE_NOHASHDIR=1

case "${1:-}" in
demo)
    install_missing "${build_packages[@]}"
    configure build/release -DCMAKE_BUILD_TYPE=Release -DASCHED_BUILD_TESTS=OFF -DASCHED_BUILD_BENCH=OFF
    cmake --build build/release -j "$jobs" --target example_demo
    exec build/release/examples/demo
    ;;
test)
    install_missing "${build_packages[@]}" "${test_packages[@]}"
    start=$(date +%s)
    total=0
    run_ctest() { # dir, ctest args...
        local dir="$1"; shift
        local log="$dir.ctest.log"
        (cd "$dir" && ctest --output-on-failure -j "$jobs" "$@") 2>&1 | tee "$log"
        local status=${PIPESTATUS[0]}
        [ "$status" -eq 0 ] || { echo "== ctest failed in $dir"; exit "$status"; }
        local n
        n=$(grep -Eo 'tests passed, 0 tests failed out of [0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
        total=$((total + n))
    }

    fresh_root=0
    if [ "$(id -u)" -eq 0 ] && [ "${ASCHED_SKIP_FRESH_ROOT:-0}" != 1 ]; then fresh_root=1; fi
    stages=$((5 + fresh_root))

    echo "== 1/$stages clang-format: the tree matches .clang-format"
    format_sources | xargs -0 clang-format-14 --dry-run --Werror 2> build-format.log || {
        head -40 build-format.log; rm -f build-format.log
        echo "== the tree is not formatted: run scripts/run.sh format"; exit 1; }
    rm -f build-format.log
    total=$((total + 1))

    echo "== 2/$stages RelWithDebInfo: library, tests, examples, benchmarks (-Werror)"
    configure build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DASCHED_WERROR=ON -DASCHED_FAULTPOINTS=ON
    cmake --build build/ci -j "$jobs"
    run_ctest build/ci

    echo "== 3/$stages AddressSanitizer + UndefinedBehaviorSanitizer: unit, integration and backend tests"
    configure build/asan -DCMAKE_BUILD_TYPE=Debug -DASCHED_FAULTPOINTS=ON -DASCHED_SANITIZE=address,undefined \
        -DASCHED_BUILD_EXAMPLES=OFF -DASCHED_BUILD_BENCH=OFF
    cmake --build build/asan -j "$jobs" --target asched_unit_tests asched_integration_tests asched_backend_tests
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        run_ctest build/asan -R 'asched_(unit|integration|backend)_tests'

    echo "== 4/$stages ThreadSanitizer: the integration and backend tests (multi-threaded)"
    configure build/tsan -DCMAKE_BUILD_TYPE=Debug -DASCHED_FAULTPOINTS=ON -DASCHED_SANITIZE=thread \
        -DASCHED_BUILD_EXAMPLES=OFF -DASCHED_BUILD_BENCH=OFF
    cmake --build build/tsan -j "$jobs" --target asched_integration_tests asched_backend_tests
    # Newer kernels randomise mmap beyond what TSan maps; run it without ASLR.
    for t in asched_integration_tests asched_backend_tests; do
        (cd build/tsan && TSAN_OPTIONS="halt_on_error=1" setarch "$(uname -m)" -R \
            ./tests/$t --report_level=short) 2>&1 | tee build/tsan.log
        [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "== ThreadSanitizer run of $t failed"; exit 1; }
        total=$((total + 1))
    done

    echo "== 5/$stages libFuzzer: the cron parser and crontab constructor, then the admin server's HTTP request reader, 60 s each"
    configure build/fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++-14 -DASCHED_FUZZ=ON \
        -DASCHED_BUILD_TESTS=OFF -DASCHED_BUILD_EXAMPLES=OFF -DASCHED_BUILD_BENCH=OFF
    cmake --build build/fuzz -j "$jobs" --target asched_cron_fuzz asched_http_fuzz
    # -timeout: a next() (or a parse) that does not end within 5 s is reported as a hang.
    for f in cron:seeds:256 http:http_seeds:4096; do
        IFS=: read -r name seeds max_len <<< "$f"
        rm -rf "build/fuzz/corpus-$name" && mkdir -p "build/fuzz/corpus-$name"
        (cd build/fuzz && "./asched_${name}_fuzz" -max_total_time=60 -timeout=5 -max_len="$max_len" \
            -print_final_stats=1 "corpus-$name" "$here/tests/fuzz/$seeds") > "build/fuzz-$name.log" 2>&1 \
            || { tail -40 "build/fuzz-$name.log"; echo "== the $name fuzzer found a problem"; exit 1; }
        echo "$name: $(grep -E "^stat::number_of_executed_units" "build/fuzz-$name.log" || true)"
        total=$((total + 1))
    done

    if [ "$fresh_root" = 1 ]; then
        echo "== 6/$stages the demo command in a brand-new Debian 12 root"
        fresh_root_demo || exit 1
        total=$((total + 1))
    fi

    echo "== all test runs passed in $(( $(date +%s) - start )) s"
    echo "tests: ${total} passed, 0 failed"
    ;;
bench)
    install_missing "${build_packages[@]}" "${bench_packages[@]}"
    # Node.js may come from elsewhere (NodeSource ships npm inside its nodejs package, which
    # conflicts with Debian's npm): only install Debian's when the commands are missing.
    command -v node > /dev/null && command -v npm > /dev/null || install_missing nodejs npm
    reps=5; quick=0
    if [ "${2:-}" = "--quick" ]; then reps=1; quick=1; fi
    peers="$(mktemp -d)"
    trap 'rm -rf "$peers"' EXIT
    echo "== installing the peers from npm into $peers: ${npm_peers[*]}"
    npm install --silent --no-audit --no-fund --prefix "$peers" "${npm_peers[@]}" > /dev/null
    configure build/bench -DCMAKE_BUILD_TYPE=Release -DASCHED_BUILD_TESTS=OFF -DASCHED_BUILD_EXAMPLES=OFF
    cmake --build build/bench -j "$jobs"
    raw=build/bench/raw.jsonl
    : > "$raw"
    b=build/bench/bench
    py=/usr/bin/python3 # Debian's, which has python3-apscheduler
    run() { echo "== $*"; "$@" | tee -a "$raw" | grep -v '^{' || true; }
    calls=20000; n=10000; secs=5; scale=1000000; sq=20000
    if [ "$quick" = 1 ]; then calls=2000; n=2000; secs=1; scale=100000; sq=2000; fi
    run "$b/bench_cron_next" "$reps" "$calls"
    # The peers take 10-10,000 times longer per call: a tenth of the calls keeps the run short.
    run node "$here/bench/peers/cron_next.mjs" "$peers/node_modules" "$reps" "$((calls / 10))"
    run "$py" "$here/bench/peers/apscheduler3.py" cron_next "$reps" "$((calls / 10))"
    run "$b/bench_dispatch" "$reps" "$n"
    run node --max-old-space-size=12000 "$here/bench/peers/dispatch.mjs" "$peers/node_modules" "$reps" "$n"
    run "$py" "$here/bench/peers/apscheduler3.py" dispatch "$reps" "$n"
    run "$b/bench_lateness" "$(( reps < 3 ? reps : 3 ))" "$secs"
    run "$py" "$here/bench/peers/apscheduler3.py" lateness "$(( reps < 3 ? reps : 3 ))" "$secs"
    run "$b/bench_scale" "$(( reps < 3 ? reps : 3 ))" "$scale"
    run "$b/bench_sqlite_store" "$reps" "$sq"
    # A private PostgreSQL (default durability settings) on a free loopback port.
    pgbin=/usr/lib/postgresql/15/bin
    pgdir="$(mktemp -d)"
    pgport="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    [ "$(id -u)" = 0 ] && chown postgres "$pgdir"
    trap 'as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop > /dev/null 2>&1 || true; rm -rf "$peers" "$pgdir"' EXIT
    as_pg "$pgbin/initdb" -D "$pgdir/data" -U asched --auth=trust --no-instructions > /dev/null
    as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
        -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1" start > /dev/null
    run "$b/bench_postgres_store" "host=127.0.0.1 port=$pgport user=asched dbname=postgres" "$(( reps < 3 ? reps : 3 ))" "$sq"
    # A private MariaDB (default durability settings) on a free loopback port, root over TCP.
    mdir="$(mktemp -d)"
    mport="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    muser="$(id -un)"
    trap 'as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop > /dev/null 2>&1 || true; [ -f "$mdir/pid" ] && kill "$(cat "$mdir/pid")" 2> /dev/null; rm -rf "$peers" "$pgdir"' EXIT
    mariadb-install-db --no-defaults --datadir="$mdir/data" --user="$muser" \
        --auth-root-authentication-method=normal --skip-test-db > "$mdir/install.log" 2>&1
    /usr/sbin/mariadbd --no-defaults --datadir="$mdir/data" --user="$muser" --port="$mport" \
        --bind-address=127.0.0.1 --socket="$mdir/sock" --pid-file="$mdir/pid" --skip-log-bin \
        --skip-name-resolve --innodb-buffer-pool-size=256M > "$mdir/server.log" 2>&1 &
    for _ in $(seq 300); do mariadb-admin --host=127.0.0.1 --port="$mport" --user=root ping > /dev/null 2>&1 && break; sleep 0.1; done
    run "$b/bench_mariadb_store" "$mport" "$(( reps < 3 ? reps : 3 ))" "$sq"
    kill "$(cat "$mdir/pid")"; rm -rf "$mdir"
    "$py" "$here/bench/report.py" "$raw" "$here/bench/results"
    echo "== wrote bench/results/latest.md, latest.jsonl, chart.png"
    sed -n '/## Targets/,/## Figures/p' bench/results/latest.md
    ;;
soak)
    install_missing "${build_packages[@]}" "${test_packages[@]}"
    start=$(date +%s)
    configure build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DASCHED_WERROR=ON -DASCHED_FAULTPOINTS=ON
    cmake --build build/ci -j "$jobs" --target asched_cluster_tests asched_test_node
    (cd build/ci && ASCHED_SOAK=1 ./tests/asched_cluster_tests --report_level=short \
        --log_level=message) 2>&1 | tee build/soak.log
    status=${PIPESTATUS[0]}
    verdict=passed; [ "$status" -eq 0 ] || verdict="failed (exit $status)"
    echo "== soak $verdict in $(( $(date +%s) - start )) s (log: build/soak.log)"
    exit "$status"
    ;;
fresh-root)
    [ "$(id -u)" -eq 0 ] || { echo "scripts/run.sh fresh-root needs root (debootstrap, chroot, mount)" >&2; exit 2; }
    fresh_root_demo
    ;;
format)
    install_missing clang-format-14
    format_sources | xargs -0 clang-format-14 -i
    ;;
*)
    echo "usage: scripts/run.sh demo|test|soak|bench [--quick]|format|fresh-root" >&2
    exit 2
    ;;
esac
