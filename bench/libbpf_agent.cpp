// The yardstick for agent_start_bench: a minimal libbpf-based agent that loads the same objects
// and attaches the same programs to a cgroup, says READY=1 to $NOTIFY_SOCKET, and detaches on
// SIGTERM. It fills no maps (the real agent does), so it does less work than ours.
//   libbpf_agent CGROUP_DIR OBJECT...
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

void notify(const char* msg) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path) {
        return;
    }
    int s = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    ::sendto(s, msg, std::strlen(msg), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::close(s);
}

}  // namespace

int main(int argc, char** argv) {
    const auto t0 = std::chrono::steady_clock::now();
    if (argc < 3) {
        std::fprintf(stderr, "usage: libbpf_agent CGROUP_DIR OBJECT...\n");
        return 64;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    int cg = ::open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0) {
        std::perror(argv[1]);
        return 1;
    }
    std::vector<bpf_object*> objects;
    std::vector<bpf_link*> links;
    for (int i = 2; i < argc; ++i) {
        bpf_object* o = bpf_object__open_file(argv[i], nullptr);
        if (!o || bpf_object__load(o) != 0) {
            std::fprintf(stderr, "load %s failed\n", argv[i]);
            return 1;
        }
        objects.push_back(o);
        bpf_program* p;
        bpf_object__for_each_program(p, o) {
            bpf_link* l = bpf_program__attach_cgroup(p, cg);
            if (!l) {
                std::fprintf(stderr, "attach %s failed\n", bpf_program__name(p));
                return 1;
            }
            links.push_back(l);
        }
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "ready startup_ms=%.2f programs=%zu\n", ms, links.size());
    notify("READY=1");
    int sig;
    sigwait(&set, &sig);
    for (auto* l : links) {
        bpf_link__destroy(l);
    }
    for (auto* o : objects) {
        bpf_object__close(o);
    }
    ::close(cg);
    return 0;
}
