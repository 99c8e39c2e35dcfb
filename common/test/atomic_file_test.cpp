// write_file_atomically: a writer killed (SIGKILL) at any point leaves the old
// file or the new one, never part of one; a failed write leaves nothing.
#include "vnetct/common/atomic_file.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace {
namespace fs = std::filesystem;

class AtomicFile_test : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "vnetct-atomic-XXXXXX").string();
        ASSERT_NE(mkdtemp(pattern.data()), nullptr);
        m_dir = pattern;
    }
    void TearDown() override { fs::remove_all(m_dir); }

    static std::string read(const fs::path& path) {
        std::ifstream stream(path);
        std::stringstream content;
        content << stream.rdbuf();
        return content.str();
    }

    // Version n: a header with its own length, n * 512 bytes of body, an end mark.
    static std::string version(int n) {
        const std::string body(static_cast<std::size_t>(n) * 512, 'x');
        return std::to_string(body.size()) + "\n" + body + "\nend\n";
    }
    static bool whole(const std::string& text) {
        const auto newline = text.find('\n');
        if (newline == std::string::npos) {
            return false;
        }
        const auto length = std::stoul(text.substr(0, newline));
        return text.size() == newline + 1 + length + 5 && text.compare(text.size() - 5, 5, "\nend\n") == 0;
    }

    fs::path m_dir;
};

TEST_F(AtomicFile_test, replaces_the_file_and_leaves_no_temporary) {
    const fs::path target = m_dir / "journal.json";
    ASSERT_TRUE(vnetct::write_file_atomically(target, "one\n", 0600));
    ASSERT_TRUE(vnetct::write_file_atomically(target, "two\n", 0600));
    EXPECT_EQ(read(target), "two\n");
    EXPECT_EQ(fs::status(target).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
    EXPECT_EQ(std::distance(fs::directory_iterator(m_dir), fs::directory_iterator()), 1);
}

TEST_F(AtomicFile_test, a_failed_write_names_the_file_and_changes_nothing) {
    const auto written = vnetct::write_file_atomically(m_dir / "missing" / "journal.json", "x");
    ASSERT_FALSE(written);
    EXPECT_NE(written.error().find("missing/journal.json"), std::string::npos) << written.error();
    EXPECT_EQ(std::distance(fs::directory_iterator(m_dir), fs::directory_iterator()), 0);
}

TEST_F(AtomicFile_test, a_writer_killed_at_random_points_of_200_runs_leaves_whole_files) {
    std::mt19937 random(17);
    std::uniform_int_distribution<long> kill_after_us(0, 30000);
    int found = 0;
    for (int run = 0; run < 200; ++run) {
        const fs::path target = m_dir / ("journal-" + std::to_string(run) + ".json");
        const pid_t child = fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            for (int n = 1;; ++n) {  // rewrites until killed
                if (!vnetct::write_file_atomically(target, version(n % 64 + 1))) {
                    _exit(1);
                }
            }
        }
        const long delay = kill_after_us(random);
        const timespec pause{0, delay * 1000};
        nanosleep(&pause, nullptr);  // the kill point, at random
        kill(child, SIGKILL);
        int status = 0;
        ASSERT_EQ(waitpid(child, &status, 0), child);
        ASSERT_TRUE(WIFSIGNALED(status)) << "the writer failed before it was killed";
        if (fs::exists(target)) {
            ++found;
            EXPECT_TRUE(whole(read(target))) << "run " << run << ": a partial file";
        }
    }
    EXPECT_GT(found, 100) << "most runs should have written once before the kill";
}

}  // namespace
