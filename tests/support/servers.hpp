// Real servers for the tests: each on loopback, on a free port, with a temporary data
// directory, stopped (and its directory removed) when the object goes away, also when a test
// fails. No system service is needed or touched.
#pragma once

#include "test_support.hpp"

#include <libpq-fe.h>

#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <mysql.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char **environ;

namespace asched::test {

/// A port nobody listens on right now (the kernel's choice for port 0).
inline std::uint16_t free_port() {
    asio::io_context ioc;
    asio::ip::tcp::acceptor a(ioc, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    return a.local_endpoint().port();
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
inline bool accepts(std::uint16_t port) {
    asio::io_context ioc;
    asio::ip::tcp::socket s(ioc);
    asio::error_code ec;
    s.connect(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port), ec);
    return !ec;
}

/// A child process; SIGKILLed and reaped at destruction if still running.
class Process {
  public:
    Process() = default;
    explicit Process(std::vector<std::string> argv) { spawn(std::move(argv)); }
    Process(const Process &) = delete;
    Process &operator=(const Process &) = delete;
    ~Process() { kill(SIGKILL); }

    /// `stderr_path`: where its stderr goes (appended; default: this process's); with
    /// `stdout_too`, its stdout as well.
    void spawn(std::vector<std::string> argv, const std::string &stderr_path = {},
               bool stdout_too = false) {
        std::vector<char *> args;
        for (auto &a : argv)
            args.push_back(a.data());
        args.push_back(nullptr);
        posix_spawn_file_actions_t files;
        posix_spawn_file_actions_init(&files);
        if (!stderr_path.empty())
            posix_spawn_file_actions_addopen(&files, 2, stderr_path.c_str(),
                                             O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (!stderr_path.empty() && stdout_too)
            posix_spawn_file_actions_adddup2(&files, 2, 1);
        const int rc = posix_spawnp(&pid_, args[0], &files, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&files);
        if (rc != 0)
            throw std::runtime_error("cannot start " + argv[0]);
    }
    /// Waits for the process to exit (bounded) and returns its exit status.
    int wait(std::chrono::seconds limit = std::chrono::seconds(60)) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("a child process did not exit in time");
            std::this_thread::sleep_for(std::chrono::milliseconds(10)); // bounded poll
        }
    }
    /// Sends `sig` without waiting (SIGSTOP, SIGCONT).
    void signal(int sig) const {
        if (pid_ > 0)
            ::kill(pid_, sig);
    }
    /// Sends `sig` and reaps the process.
    void kill(int sig) {
        if (pid_ <= 0)
            return;
        ::kill(pid_, sig);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

  private:
    pid_t pid_ = -1;
};

/// A server process of the tests on a free loopback port (its stderr in its temporary
/// directory): started with the argv `command` gives for that port, stopped with SIGKILL (a crash:
/// clients see their connections drop), started again on the same port, frozen and thawed with
/// SIGSTOP/SIGCONT (connections stay open and nothing answers).
class LoopbackServer {
  public:
    std::uint16_t port() const noexcept { return port_; }

    void start() {
        process_.spawn(command_(port_, dir_), dir_.path("stderr.log"));
        wait_until(true);
    }
    void stop() {
        process_.kill(SIGKILL);
        wait_until(false);
    }
    void freeze() { process_.signal(SIGSTOP); }
    void thaw() { process_.signal(SIGCONT); }

  protected:
    using Command = std::function<std::vector<std::string>(std::uint16_t, const TempDir &)>;
    LoopbackServer(std::string name, Command command)
        : name_(std::move(name)), command_(std::move(command)), port_(free_port()) {}
    const TempDir &dir() const { return dir_; }

  private:
    void wait_until(bool up) const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (accepts(port_) != up) {
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error(name_ + " did not " + (up ? "start" : "stop"));
            std::this_thread::sleep_for(std::chrono::milliseconds(10)); // bounded poll for the port
        }
    }

    std::string name_;
    Command command_;
    TempDir dir_;
    std::uint16_t port_;
    Process process_;
};

/// redis-server: no persistence, its files in a temporary directory.
class RedisServer : public LoopbackServer {
  public:
    RedisServer()
        : LoopbackServer("redis-server", [](std::uint16_t port, const TempDir &dir) {
              return std::vector<std::string>{
                  "redis-server", "--port",    std::to_string(port), "--bind", "127.0.0.1",
                  "--save",       "",          "--appendonly",       "no",     "--dir",
                  dir.path(""),   "--logfile", dir.path("redis.log")};
          }) {
        start();
    }
};

/// Runs `argv` to completion; throws naming the command when it fails.
inline void run_command(std::vector<std::string> argv) {
    const std::string what = argv.front();
    Process p(std::move(argv));
    if (const int status = p.wait(); status != 0)
        throw std::runtime_error(what + " failed with status " + std::to_string(status));
}

/// Debian's MariaDB (package mariadb-server): mariadb-install-db into a temporary directory,
/// then mariadbd on a free loopback port (its socket in the same directory), user "root"
/// without a password over TCP, small InnoDB files, no binary log. stop() is SIGKILL (a crash:
/// InnoDB recovers at the next start, on the same port). Run as root, the server runs as root
/// (`--user=root`), else as the current user.
class MariaDbServer : public LoopbackServer {
  public:
    MariaDbServer()
        : LoopbackServer("mariadbd", [](std::uint16_t port, const TempDir &dir) {
              auto argv = server_options(dir);
              argv.insert(argv.begin(), "/usr/sbin/mariadbd");
              for (std::string a : std::vector<std::string>{
                       "--port=" + std::to_string(port), "--bind-address=127.0.0.1",
                       "--socket=" + dir.path("mariadb.sock"),
                       "--pid-file=" + dir.path("mariadb.pid"), "--skip-log-bin",
                       "--skip-name-resolve", "--log-error=" + dir.path("error.log"),
                       "--max-connections=500"})
                  argv.push_back(std::move(a));
              return argv;
          }) {
        auto install = server_options(dir());
        install.insert(install.begin(), "mariadb-install-db");
        for (std::string a : std::vector<std::string>{"--auth-root-authentication-method=normal",
                                                      "--skip-test-db", "--skip-name-resolve"})
            install.push_back(std::move(a));
        Process installer;
        installer.spawn(install, dir().path("install.log"), true);
        if (const int status = installer.wait(); status != 0)
            throw std::runtime_error("mariadb-install-db failed with status " +
                                     std::to_string(status) + ", see " + dir().path("install.log"));
        start();
    }

  private:
    // What the installer and the server share: where the data is and how InnoDB stores it.
    static std::vector<std::string> server_options(const TempDir &dir) {
        const passwd *pw = ::getpwuid(::geteuid());
        return {"--no-defaults",
                "--datadir=" + dir.path("data"),
                std::string("--user=") + (pw ? pw->pw_name : "root"),
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2", // a process crash loses nothing
                "--innodb-doublewrite=0"};
    }
};

/// One MariaDB server for a whole test program; tests separate their data by database.
inline MariaDbServer &shared_mariadb() {
    static MariaDbServer server;
    return server;
}

/// Debian's mosquitto (package mosquitto): anonymous, no persistence, no log, its
/// configuration in a temporary directory.
class MosquittoServer : public LoopbackServer {
  public:
    MosquittoServer()
        : LoopbackServer("mosquitto", [](std::uint16_t port, const TempDir &dir) {
              std::ofstream conf(dir.path("mosquitto.conf"));
              conf << "listener " << port << " 127.0.0.1\n"
                   << "allow_anonymous true\n"
                   << "persistence false\n"
                   << "log_dest none\n"
                   << "user root\n"; // as root: keep it (not 'mosquitto'); else ignored
              return std::vector<std::string>{"/usr/sbin/mosquitto", "-c",
                                              dir.path("mosquitto.conf")};
          }) {
        start();
    }
};

/// A PostgreSQL 15 cluster of its own: initdb into a temporary directory, the server on a
/// free loopback port (its socket in the same directory), trust authentication for the role
/// "asched", fsync off. Run as root (as CI does), the cluster belongs to the "postgres" user,
/// since PostgreSQL refuses to run as root. stop() is `pg_ctl stop -m immediate` (a crash, as
/// far as clients can tell); start() brings it back on the same port.
class PostgresServer {
  public:
    PostgresServer() : port_(free_port()) {
        if (::getuid() == 0) {
            const passwd *pw = ::getpwnam("postgres");
            if (!pw)
                throw std::runtime_error(
                    "running as root needs the 'postgres' user (package postgresql)");
            if (::chown(dir_.path("").c_str(), pw->pw_uid, pw->pw_gid) != 0)
                throw std::runtime_error("cannot hand the temporary directory to 'postgres'");
        }
        run_command(as_owner({bin("initdb"), "-D", data(), "-U", "asched", "--auth=trust", "-E",
                              "UTF8", "--no-sync", "--no-instructions"}));
        start();
    }
    ~PostgresServer() {
        try {
            stop();
        } catch (...) {
        }
    }
    PostgresServer(const PostgresServer &) = delete;
    PostgresServer &operator=(const PostgresServer &) = delete;

    std::uint16_t port() const noexcept { return port_; }
    /// A libpq connection string for the database "postgres".
    std::string conninfo() const {
        return "host=127.0.0.1 port=" + std::to_string(port_) +
               " user=asched dbname=postgres connect_timeout=5";
    }

    void start() {
        run_command(as_owner(
            {bin("pg_ctl"), "-D", data(), "-l", dir_.path("server.log"), "-w", "-t", "60", "-o",
             "-p " + std::to_string(port_) + " -k " + dir_.path("") +
                 " -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
             "start"}));
        running_ = true;
    }
    void stop() {
        if (!running_)
            return;
        running_ = false;
        run_command(as_owner({bin("pg_ctl"), "-D", data(), "-m", "immediate", "-w", "stop"}));
    }
    /// Sends `sig` to the postmaster and every process it forked (backends, checkpointer,
    /// WAL writer...): SIGSTOP freezes the server with its TCP connections open, SIGCONT
    /// thaws it. Returns how many processes got it.
    std::size_t signal_all(int sig) {
        pid_t postmaster = 0;
        std::ifstream(data() + "/postmaster.pid") >> postmaster;
        if (postmaster <= 0)
            throw std::runtime_error("postmaster.pid names no process");
        std::vector<pid_t> pids = children_of(postmaster);
        pids.push_back(postmaster);
        for (const pid_t pid : pids)
            ::kill(pid, sig);
        return pids.size();
    }

  private:
    std::string data() const { return dir_.path("data"); }

    static std::string bin(const std::string &tool) {
        for (const char *dir : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"})
            if (std::filesystem::exists(std::string(dir) + "/" + tool))
                return std::string(dir) + "/" + tool;
        return tool; // from PATH
    }
    static std::vector<std::string> as_owner(std::vector<std::string> argv) {
        if (::getuid() == 0)
            argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
        return argv;
    }

    TempDir dir_;
    std::uint16_t port_;
    bool running_ = false;
};

/// Debian's pgbouncer in front of `server`, on a free loopback port, in `pool_mode` (R14:
/// "transaction"), trust authentication for the role "asched", 2 server connections per pool.
/// Run as root, it runs as the "postgres" user (it refuses root). Stopped with SIGINT.
class PgBouncer {
  public:
    PgBouncer(const PostgresServer &server, const std::string &pool_mode) : port_(free_port()) {
        if (::getuid() == 0) {
            const passwd *pw = ::getpwnam("postgres");
            if (!pw || ::chown(dir_.path("").c_str(), pw->pw_uid, pw->pw_gid) != 0)
                throw std::runtime_error("cannot hand the temporary directory to 'postgres'");
        }
        std::ofstream(dir_.path("userlist.txt")) << "\"asched\" \"\"\n";
        std::ofstream(dir_.path("pgbouncer.ini"))
            << "[databases]\npostgres = host=127.0.0.1 port=" << server.port()
            << " dbname=postgres\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = " << port_
            << "\nunix_socket_dir =\nauth_type = trust\nauth_file = " << dir_.path("userlist.txt")
            << "\npool_mode = " << pool_mode
            << "\ndefault_pool_size = 2\nlogfile = " << dir_.path("pgbouncer.log")
            << "\npidfile = " << dir_.path("pgbouncer.pid")
            << "\nignore_startup_parameters = extra_float_digits\n";
        std::vector<std::string> argv{"/usr/sbin/pgbouncer", "-d", dir_.path("pgbouncer.ini")};
        if (::getuid() == 0)
            argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
        run_command(argv);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!accepts(port_)) {
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("pgbouncer did not start listening");
            std::this_thread::sleep_for(std::chrono::milliseconds(10)); // bounded poll
        }
    }
    ~PgBouncer() {
        pid_t pid = 0;
        std::ifstream(dir_.path("pgbouncer.pid")) >> pid;
        if (pid > 0)
            ::kill(pid, SIGINT);
        for (int i = 0; i < 500 && pid > 0 && ::kill(pid, 0) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10)); // bounded: 5 s
    }
    PgBouncer(const PgBouncer &) = delete;
    PgBouncer &operator=(const PgBouncer &) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string conninfo() const {
        return "host=127.0.0.1 port=" + std::to_string(port_) +
               " user=asched dbname=postgres connect_timeout=5";
    }

  private:
    TempDir dir_;
    std::uint16_t port_;
};

/// One PostgreSQL server for a whole test program (initdb takes seconds); tests separate
/// their data by schema or channel. A test that stops it starts it again before it ends.
inline PostgresServer &shared_postgres() {
    static PostgresServer server;
    return server;
}

/// A blocking libpq connection for a test's side queries (locking a table, reading a ledger).
class Psql {
  public:
    explicit Psql(const std::string &conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
        if (PQstatus(conn_) != CONNECTION_OK)
            throw std::runtime_error(std::string("psql: ") + PQerrorMessage(conn_));
    }
    ~Psql() { PQfinish(conn_); }
    Psql(const Psql &) = delete;
    Psql &operator=(const Psql &) = delete;

    /// Runs `sql`; the first column of the first row ("" without rows). Throws on an error.
    std::string exec(const std::string &sql) {
        PGresult *r = PQexec(conn_, sql.c_str());
        const auto status = PQresultStatus(r);
        std::string out;
        if (status == PGRES_TUPLES_OK && PQntuples(r) > 0)
            out = PQgetvalue(r, 0, 0);
        PQclear(r);
        if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
            throw std::runtime_error("psql: " + sql + ": " + PQerrorMessage(conn_));
        return out;
    }

    /// Every row of `sql`, each column as text ("" for NULL). Throws on an error.
    std::vector<std::vector<std::string>> rows(const std::string &sql) {
        PGresult *r = PQexec(conn_, sql.c_str());
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            PQclear(r);
            throw std::runtime_error("psql: " + sql + ": " + PQerrorMessage(conn_));
        }
        std::vector<std::vector<std::string>> out;
        for (int i = 0; i < PQntuples(r); ++i) {
            std::vector<std::string> row;
            for (int c = 0; c < PQnfields(r); ++c)
                row.emplace_back(PQgetvalue(r, i, c));
            out.push_back(std::move(row));
        }
        PQclear(r);
        return out;
    }

  private:
    PGconn *conn_;
};

/// A blocking MariaDB connection for a test's side queries (locking a table, damaging a row,
/// reading a ledger), as root over TCP.
class MariaSql {
  public:
    explicit MariaSql(std::uint16_t port) : conn_(mysql_init(nullptr)) {
        mysql_options(conn_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
        if (!mysql_real_connect(conn_, "127.0.0.1", "root", nullptr, nullptr, port, nullptr, 0))
            throw std::runtime_error(std::string("mariadb: ") + mysql_error(conn_));
    }
    ~MariaSql() { mysql_close(conn_); }
    MariaSql(const MariaSql &) = delete;
    MariaSql &operator=(const MariaSql &) = delete;

    /// Runs `sql`; the first column of the first row ("" without rows or for NULL).
    std::string exec(const std::string &sql) {
        auto all = rows(sql);
        return all.empty() || all[0].empty() ? std::string() : all[0][0];
    }
    /// Every row of `sql`, each column as text ("" for NULL). Throws on an error.
    std::vector<std::vector<std::string>> rows(const std::string &sql) {
        if (mysql_real_query(conn_, sql.data(), sql.size()) != 0)
            throw std::runtime_error("mariadb: " + sql.substr(0, 200) + ": " + mysql_error(conn_));
        std::vector<std::vector<std::string>> out;
        MYSQL_RES *res = mysql_store_result(conn_);
        if (!res)
            return out;
        const unsigned n = mysql_num_fields(res);
        while (MYSQL_ROW r = mysql_fetch_row(res)) {
            const unsigned long *lengths = mysql_fetch_lengths(res);
            std::vector<std::string> row;
            for (unsigned c = 0; c < n; ++c)
                row.emplace_back(r[c] ? std::string(r[c], lengths[c]) : std::string());
            out.push_back(std::move(row));
        }
        mysql_free_result(res);
        return out;
    }

  private:
    MYSQL *conn_;
};

} // namespace asched::test
