// The board top (hw/boards/sim_verilog.py), UART included, verilated and served on a TCP socket: bytes from
// the socket go bit by bit (8N1) onto the board's rx line, the bits of its tx line go back as bytes. A host
// driver opens it as pyserial's socket://127.0.0.1:PORT, exactly like a board's serial port.
//
//   board_server --clocks-per-bit N --rest-cycles N [--port N]
//
// Prints "PORT <n>" on stdout once it listens on 127.0.0.1, serves one connection and exits when the host
// closes it, printing what it simulated on stderr. The rx line runs at the UART's rate whatever the host
// sends: bytes the host sends faster wait here, as in a USB-UART's buffer, and a board that stops draining
// its receive buffer really overruns. After rest_cycles without a bit on either line the board cannot change
// until the next byte (sim/board_server.py), so the server then waits on the socket instead of clocking.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "Vboard.h"
#include "verilated.h"

namespace {

constexpr uint64_t POLL_CYCLES = 256;       // cycles between socket polls while the board is not at rest
constexpr int RESET_CYCLES = 4;
constexpr int BITS_PER_BYTE = 10;           // start, 8 data bits (LSB first), stop

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "board_server: %s: %s\n", what.c_str(), std::strerror(errno));
    std::exit(2);
}

uint64_t argument(int argc, char** argv, const char* name, bool required, uint64_t fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) return std::strtoull(argv[i + 1], nullptr, 10);
    if (required) {
        std::fprintf(stderr, "board_server: missing %s N\n", name);
        std::exit(2);
    }
    return fallback;
}

// Shifts queued bytes out as 8N1 frames, one line level per clock cycle.
class LineSender {
  public:
    explicit LineSender(uint64_t clocks_per_bit) : clocks_per_bit_(clocks_per_bit) {}
    std::deque<uint8_t> queue;

    bool busy() const { return bit_ < BITS_PER_BYTE; }

    // The line level for the next cycle.
    int next_level() {
        if (!busy()) {
            if (queue.empty()) return 1;
            byte_ = queue.front();
            queue.pop_front();
            bit_ = 0;
            clock_ = 0;
        }
        int level = bit_ == 0 ? 0 : bit_ == BITS_PER_BYTE - 1 ? 1 : (byte_ >> (bit_ - 1)) & 1;
        if (++clock_ == clocks_per_bit_) {
            clock_ = 0;
            ++bit_;
        }
        return level;
    }

  private:
    uint64_t clocks_per_bit_;
    uint8_t byte_ = 0;
    int bit_ = BITS_PER_BYTE;
    uint64_t clock_ = 0;
};

// Samples a line once per clock cycle and returns the bytes of its 8N1 frames (in the middle of each bit).
class LineReceiver {
  public:
    explicit LineReceiver(uint64_t clocks_per_bit) : clocks_per_bit_(clocks_per_bit) {}
    uint64_t framing_errors = 0;

    bool busy() const { return in_frame_; }

    // Feeds one cycle's level; true when `byte` received a whole byte.
    bool sample(int level, uint8_t& byte) {
        if (!in_frame_) {
            if (level) return false;
            in_frame_ = true;
            clock_ = 0;
            shift_ = 0;
        }
        uint64_t bit = clock_ / clocks_per_bit_;
        bool middle = clock_ % clocks_per_bit_ == clocks_per_bit_ / 2;
        ++clock_;
        if (!middle) return false;
        if (bit >= 1 && bit <= 8) shift_ |= (level & 1) << (bit - 1);
        if (bit < BITS_PER_BYTE - 1) return false;
        in_frame_ = false;
        if (!level) {                           // no stop bit: not a byte
            ++framing_errors;
            return false;
        }
        byte = static_cast<uint8_t>(shift_);
        return true;
    }

  private:
    uint64_t clocks_per_bit_;
    bool in_frame_ = false;
    uint64_t clock_ = 0;
    unsigned shift_ = 0;
};

int listen_on_loopback(uint16_t port) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) fail("socket");
    int yes = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) fail("bind");
    if (listen(listener, 1) < 0) fail("listen");
    socklen_t length = sizeof address;
    if (getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) < 0) fail("getsockname");
    std::printf("PORT %u\n", ntohs(address.sin_port));
    std::fflush(stdout);
    return listener;
}

// Moves what the host sent into `queue`; waits up to `wait_ms` for it (0: do not wait, -1: forever).
// False when the host closed the connection.
bool receive_from_host(int connection, std::deque<uint8_t>& queue, int wait_ms) {
    pollfd readable{connection, POLLIN, 0};
    int ready = poll(&readable, 1, wait_ms);
    if (ready < 0 && errno != EINTR) fail("poll");
    if (ready <= 0) return true;
    uint8_t chunk[65536];
    ssize_t got = recv(connection, chunk, sizeof chunk, MSG_DONTWAIT);
    if (got == 0) return false;
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
        if (errno == ECONNRESET) return false;
        fail("recv");
    }
    queue.insert(queue.end(), chunk, chunk + got);
    return true;
}

void send_to_host(int connection, std::vector<uint8_t>& outgoing) {
    size_t sent = 0;
    while (sent < outgoing.size()) {
        ssize_t done = send(connection, outgoing.data() + sent, outgoing.size() - sent, MSG_NOSIGNAL);
        if (done < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET) break;   // the host left; its reads no longer matter
            fail("send");
        }
        sent += static_cast<size_t>(done);
    }
    outgoing.clear();
}

}  // namespace

int main(int argc, char** argv) {
    const uint64_t clocks_per_bit = argument(argc, argv, "--clocks-per-bit", true, 0);
    const uint64_t rest_cycles = argument(argc, argv, "--rest-cycles", true, 0);
    const auto port = static_cast<uint16_t>(argument(argc, argv, "--port", false, 0));
    if (clocks_per_bit < 2) {
        std::fprintf(stderr, "board_server: --clocks-per-bit must be at least 2\n");
        return 2;
    }

    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto board = std::make_unique<Vboard>(context.get());
    uint64_t cycle = 0;
    auto tick = [&](int rx_level) {
        board->rx = rx_level;
        board->clk = 0;
        board->eval();
        board->clk = 1;
        board->eval();
        ++cycle;
    };
    board->rst = 1;            // the clock domain's reset
    board->reset = 1;          // the board's reset port (SerialBoard.reset), as a board top drives it
    for (int i = 0; i < RESET_CYCLES; ++i) tick(1);
    board->rst = 0;
    board->reset = 0;

    int listener = listen_on_loopback(port);
    int connection = accept(listener, nullptr, nullptr);
    if (connection < 0) fail("accept");
    int yes = 1;
    setsockopt(connection, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);

    LineSender to_board(clocks_per_bit);
    LineReceiver from_board(clocks_per_bit);
    std::vector<uint8_t> outgoing;
    uint64_t last_bit_cycle = cycle, bytes_in = 0, bytes_out = 0, rests = 0;
    bool open = true;
    while (open) {
        bool line_busy = to_board.busy() || !to_board.queue.empty() || from_board.busy();
        if (!line_busy && cycle - last_bit_cycle >= rest_cycles) {
            send_to_host(connection, outgoing);
            ++rests;
            size_t before = to_board.queue.size();
            open = receive_from_host(connection, to_board.queue, -1);
            bytes_in += to_board.queue.size() - before;
            continue;
        }
        if (cycle % POLL_CYCLES == 0) {
            send_to_host(connection, outgoing);
            size_t before = to_board.queue.size();
            open = receive_from_host(connection, to_board.queue, 0);
            bytes_in += to_board.queue.size() - before;
        }
        tick(to_board.next_level());
        uint8_t byte;
        if (from_board.sample(board->tx, byte)) {
            outgoing.push_back(byte);
            ++bytes_out;
        }
        if (to_board.busy() || from_board.busy()) last_bit_cycle = cycle;
    }
    board->final();
    close(connection);
    close(listener);
    std::fprintf(stderr, "board_server: %llu cycles, %llu bytes in, %llu bytes out, %llu rests, %llu framing "
                 "errors on tx\n", static_cast<unsigned long long>(cycle), static_cast<unsigned long long>(bytes_in),
                 static_cast<unsigned long long>(bytes_out), static_cast<unsigned long long>(rests),
                 static_cast<unsigned long long>(from_board.framing_errors));
    return 0;
}
