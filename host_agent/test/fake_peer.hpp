// A scripted peer for the line-JSON clients: a unix socket server in its own
// temporary folder, run on a thread, that follows a script written before
// start(): send these lines, expect a line matching, send raw bytes, close,
// stall. Whatever goes wrong on the peer's side is collected and returned by
// finish() so the test can assert it is empty.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace vnetct::host_agent::testing {

class FakePeer {
  public:
    FakePeer();
    ~FakePeer();
    FakePeer(const FakePeer&) = delete;
    FakePeer& operator=(const FakePeer&) = delete;

    // Script steps, run in order after start().
    FakePeer& send(const nlohmann::json& message);  // one line
    FakePeer& send_line(std::string text);          // text + '\n'
    FakePeer& send_raw(std::string bytes);          // as is
    FakePeer& expect(nlohmann::json match);         // next line is JSON holding every key of `match`
    FakePeer& close();                              // hang up; the script ends here
    FakePeer& stall();                              // read and answer nothing until finish()
    FakePeer& pause(std::chrono::milliseconds time);  // do nothing for `time` (finish() cuts it short)
    FakePeer& reaccept();  // wait for the client to hang up, then go on with the next client

    // Runs the script on a thread. The socket appears only after
    // `listen_delay`, the way QEMU creates its monitor socket after starting.
    void start(std::chrono::milliseconds listen_delay = std::chrono::milliseconds{0});

    // Waits (bounded) until the script has run to a stall or its end, stops
    // the peer and returns the problems met; empty means the script held.
    std::vector<std::string> finish();

    // Waits until the script has run to a stall or its end, at most `bound`;
    // false if it has not.
    bool wait_until_idle(std::chrono::milliseconds bound);

    // Every line the peer read, in order (complete after finish()).
    [[nodiscard]] std::vector<std::string> received() const;

    [[nodiscard]] const std::string& dir() const { return m_dir; }
    [[nodiscard]] const std::string& socket_path() const { return m_socket_path; }

  private:
    enum class StepKind { Send, Expect, Close, Stall, Pause, Reaccept };
    struct Step {
        StepKind kind;
        std::string bytes;     // Send
        nlohmann::json match;  // Expect
        std::chrono::milliseconds time{0};  // Pause
    };

    void run(std::chrono::milliseconds listen_delay);
    bool run_step(int connection, const Step& step, std::size_t number);
    // Waits for the client to hang up and accepts the next one on `listener`;
    // -1 (with a problem noted, unless stopped) if none comes.
    int next_client(int listener, int connection, std::size_t number);
    // One line from `connection` until the step bound or stop; false on EOF,
    // stop or timeout (`why` says which).
    bool read_line(int connection, std::string& line, std::string& why);
    // Reads and drops everything until the client hangs up or stop.
    void drain(int connection);
    void problem(std::string text);
    void set_idle();
    [[nodiscard]] bool stop_requested(int timeout_ms) const;

    std::string m_dir;
    std::string m_socket_path;
    std::vector<Step> m_script;
    std::string m_pending;  // bytes read past the last line
    int m_stop_fd = -1;     // eventfd: readable once finish() asks the peer to stop
    std::thread m_thread;

    mutable std::mutex m_mutex;
    std::condition_variable m_idle_changed;
    bool m_idle = false;
    std::vector<std::string> m_problems;
    std::vector<std::string> m_received;
};

// The lines of a JSONL file (a transcript); a line that is not JSON throws, failing the test.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

}  // namespace vnetct::host_agent::testing
