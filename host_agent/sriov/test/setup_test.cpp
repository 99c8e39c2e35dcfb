// The whole set-up and its undo journal on a fake sysfs tree, with a stand-in
// for a PF driver that supports VF configuration (none does on the test host).
#include "vnetct/sriov/setup.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "fake_sysfs.hpp"

namespace vnetct::sriov {
namespace {

using test_support::FakeSysfs;
using Writes = std::vector<std::pair<std::string, std::string>>;
namespace fs = std::filesystem;

// The PF driver's VF table, and the order of calls.
class FakeVfLink : public VfLink {
  public:
    SriovResult<std::vector<VfLinkState>> read(const std::string& pf) const override {
        if (pf != "enp59s0f0") {
            return fail(SriovErrc::NoSuchPf, pf);
        }
        return vfs;
    }
    SriovResult<void> apply(const std::string& pf, int vf, const VfSettings& settings) const override {
        calls.push_back(pf + " vf " + std::to_string(vf) + (settings.mac ? " mac " + *settings.mac : "") +
                        (settings.vlan ? " vlan " + std::to_string(*settings.vlan) : "") +
                        (settings.trust ? std::string(" trust ") + (*settings.trust ? "on" : "off") : ""));
        if (refuse_trust && settings.trust) {
            return fail(SriovErrc::VfOpsUnsupported, "trust");
        }
        auto& state = vfs.at(static_cast<std::size_t>(vf));
        if (settings.mac) state.mac = *settings.mac;
        if (settings.vlan) state.vlan = *settings.vlan;
        if (settings.trust) state.trust = *settings.trust;
        return {};
    }
    mutable std::vector<VfLinkState> vfs;
    mutable std::vector<std::string> calls;
    bool refuse_trust = false;
};

class Setup_test : public ::testing::Test {
  protected:
    void SetUp() override {
        m_fake.add_pf("enp59s0f0", "0000:3b:00.0", 8, 0);
        m_fake.add_driver("vfio-pci");
        m_journal_path = m_fake.root() / "run" / "sriov-journal.json";
        fs::create_directories(m_journal_path.parent_path());
        m_request.pf = "enp59s0f0";
        m_request.num_vfs = 2;
        VfRequest vf;
        vf.index = 1;
        vf.settings.mac = "52:54:00:6f:55:cc";
        vf.settings.vlan = 100;
        vf.settings.trust = true;
        m_request.vfs = {vf};
    }
    // What the PF reports once VFs exist (the fake kernel creates them on the write).
    void pf_reports_vfs(int count) {
        m_link.vfs.clear();
        for (int index = 0; index < count; ++index) {
            m_link.vfs.push_back({index, "00:00:00:00:00:00", 0, 0, false, true});
        }
    }
    FakeSysfs m_fake;
    Sysfs m_sysfs = m_fake.sysfs();
    FakeVfLink m_link;
    fs::path m_journal_path;
    SetupRequest m_request;
};

TEST_F(Setup_test, PreparesInOrderAndRestoresEverything) {
    pf_reports_vfs(2);
    Journal journal(m_journal_path);
    auto prepared = prepare(m_request, m_sysfs, m_link, journal);
    ASSERT_TRUE(prepared) << prepared.error().message();
    ASSERT_EQ(prepared->size(), 1u);
    const std::string vf = FakeSysfs::vf_address(1);
    EXPECT_EQ((*prepared)[0].address, vf);
    EXPECT_EQ((*prepared)[0].iommu_group, "vf1");
    EXPECT_EQ((*prepared)[0].driver, "vfio-pci");
    EXPECT_EQ(m_fake.writes(), (Writes{{"class/net/enp59s0f0/device/sriov_numvfs", "2"},
                                       {"bus/pci/devices/" + vf + "/driver_override", "vfio-pci"},
                                       {"bus/pci/drivers/iavf/unbind", vf},
                                       {"bus/pci/drivers_probe", vf}}));
    EXPECT_EQ(m_link.calls, (std::vector<std::string>{"enp59s0f0 vf 1 mac 52:54:00:6f:55:cc vlan 100 trust on"}));
    ASSERT_EQ(journal.entries().size(), 3u);
    EXPECT_EQ(journal.entries()[0]["op"], "num_vfs");
    EXPECT_EQ(journal.entries()[1]["op"], "vf_link");
    EXPECT_EQ(journal.entries()[2]["op"], "binding");
    ASSERT_TRUE(fs::exists(m_journal_path)) << "the journal is on disk while the changes stand";

    m_fake.clear_writes();
    m_link.calls.clear();
    const auto report = journal.restore(m_sysfs, m_link);
    EXPECT_TRUE(report.failures.empty()) << report.failures.front();
    EXPECT_EQ(report.undone.size(), 3u);
    EXPECT_EQ(m_fake.writes(), (Writes{{"bus/pci/drivers/vfio-pci/unbind", vf},
                                       {"bus/pci/devices/" + vf + "/driver_override", "\n"},
                                       {"bus/pci/drivers_probe", vf},
                                       {"class/net/enp59s0f0/device/sriov_numvfs", "0"}}));
    EXPECT_EQ(m_link.calls, (std::vector<std::string>{"enp59s0f0 vf 1 mac 00:00:00:00:00:00 vlan 0 trust off"}));
    EXPECT_EQ(m_fake.read("class/net/enp59s0f0/device/sriov_numvfs"), "0\n");
    EXPECT_TRUE(journal.empty());
    EXPECT_FALSE(fs::exists(m_journal_path)) << "a fully restored journal leaves no file";
}

TEST_F(Setup_test, ALeftBehindJournalIsRestoredByTheNextRun) {
    pf_reports_vfs(2);
    {
        Journal journal(m_journal_path);
        ASSERT_TRUE(prepare(m_request, m_sysfs, m_link, journal));
        // The run dies here (crash, SIGKILL): nothing restores.
    }
    auto left = Journal::load(m_journal_path);
    ASSERT_TRUE(left) << left.error().message();
    EXPECT_EQ(left->entries().size(), 3u);
    const auto report = left->restore(m_sysfs, m_link);
    EXPECT_TRUE(report.failures.empty());
    EXPECT_EQ(m_fake.driver_of(FakeSysfs::vf_address(0)), "") << "VFs removed again";
    EXPECT_EQ(m_fake.read("class/net/enp59s0f0/device/sriov_numvfs"), "0\n");
    EXPECT_FALSE(fs::exists(m_journal_path));
}

TEST_F(Setup_test, AFailureHalfWayLeavesAJournalThatUndoesWhatWasDone) {
    pf_reports_vfs(2);
    m_link.refuse_trust = true;
    Journal journal(m_journal_path);
    auto prepared = prepare(m_request, m_sysfs, m_link, journal);
    ASSERT_FALSE(prepared);
    EXPECT_EQ(prepared.error().code, SriovErrc::VfOpsUnsupported);
    ASSERT_EQ(journal.entries().size(), 2u) << "num_vfs and vf_link recorded, no binding attempted";
    m_link.refuse_trust = false;
    const auto report = journal.restore(m_sysfs, m_link);
    EXPECT_TRUE(report.failures.empty());
    EXPECT_EQ(m_fake.read("class/net/enp59s0f0/device/sriov_numvfs"), "0\n");
}

TEST_F(Setup_test, RestoreGoesOnPastAFailureAndKeepsTheFailedEntry) {
    ASSERT_TRUE(m_sysfs.set_num_vfs("enp59s0f0", 2));  // the VFs were there before the run
    pf_reports_vfs(2);
    Journal journal(m_journal_path);
    ASSERT_TRUE(prepare(m_request, m_sysfs, m_link, journal));
    ASSERT_EQ(journal.entries().size(), 2u) << "vf_link and binding; the VF count was already right";
    const std::string vf = FakeSysfs::vf_address(1);
    m_fake.fail_writes_to("bus/pci/drivers/vfio-pci/unbind", EBUSY);
    const auto report = journal.restore(m_sysfs, m_link);
    ASSERT_EQ(report.failures.size(), 1u);
    EXPECT_NE(report.failures[0].find("vfio-pci/unbind"), std::string::npos) << report.failures[0];
    EXPECT_EQ(report.undone.size(), 1u) << "the VF link settings were still put back";
    EXPECT_EQ(m_link.vfs[1].mac, "00:00:00:00:00:00");
    ASSERT_EQ(journal.entries().size(), 1u);
    EXPECT_EQ(journal.entries()[0]["op"], "binding");
    EXPECT_TRUE(fs::exists(m_journal_path)) << "failed entries stay on disk for another try";

    // The obstacle goes away; a second restore finishes the job.
    m_fake.fail_writes_to("bus/pci/drivers/vfio-pci/unbind", 0);
    const auto again = journal.restore(m_sysfs, m_link);
    EXPECT_TRUE(again.failures.empty()) << again.failures.front();
    EXPECT_EQ(m_fake.driver_of(vf), "iavf");
    EXPECT_FALSE(fs::exists(m_journal_path));
}

TEST_F(Setup_test, BindingOfAVfThatNoLongerExistsNeedsNoRestore) {
    pf_reports_vfs(2);
    Journal journal(m_journal_path);
    ASSERT_TRUE(prepare(m_request, m_sysfs, m_link, journal));
    m_fake.fail_writes_to("bus/pci/drivers/vfio-pci/unbind", EBUSY);
    const auto report = journal.restore(m_sysfs, m_link);
    ASSERT_EQ(report.failures.size(), 1u) << "the binding";
    EXPECT_EQ(report.undone.size(), 2u) << "the VF link and the VF count (which removes the VFs)";
    const auto again = journal.restore(m_sysfs, m_link);
    EXPECT_TRUE(again.failures.empty()) << again.failures.front();
    ASSERT_EQ(again.undone.size(), 1u);
    EXPECT_NE(again.undone[0].find("no longer exists"), std::string::npos) << again.undone[0];
    EXPECT_FALSE(fs::exists(m_journal_path));
}

TEST_F(Setup_test, ExistingDifferentVfCountIsRecordedAndPutBack) {
    ASSERT_TRUE(m_sysfs.set_num_vfs("enp59s0f0", 4));
    pf_reports_vfs(2);
    m_fake.clear_writes();
    Journal journal;
    ASSERT_TRUE(prepare(m_request, m_sysfs, m_link, journal));
    EXPECT_EQ(journal.entries()[0]["previous"], 4);
    journal.restore(m_sysfs, m_link);
    const Writes writes = m_fake.writes();
    ASSERT_GE(writes.size(), 2u);
    EXPECT_EQ(writes[writes.size() - 2], (std::pair<std::string, std::string>{"class/net/enp59s0f0/device/sriov_numvfs", "0"}));
    EXPECT_EQ(writes.back(), (std::pair<std::string, std::string>{"class/net/enp59s0f0/device/sriov_numvfs", "4"}));
}

TEST_F(Setup_test, ViabilityIsCheckedBeforeAnyBinding) {
    pf_reports_vfs(2);
    ASSERT_TRUE(m_sysfs.set_num_vfs("enp59s0f0", 2));
    m_fake.add_device({"0000:3b:02.7", "nvme", "nvme", "vf1"});
    m_fake.clear_writes();
    Journal journal;
    auto prepared = prepare(m_request, m_sysfs, m_link, journal);
    ASSERT_FALSE(prepared);
    EXPECT_EQ(prepared.error().code, SriovErrc::GroupNotViable);
    for (const auto& [path, value] : m_fake.writes()) {
        EXPECT_EQ(path.find("driver"), std::string::npos) << "no binding write expected: " << path;
    }
    EXPECT_EQ(m_fake.driver_of("0000:3b:02.7"), "nvme");
}

TEST_F(Setup_test, RequestsOutsideTheDeviceAreRefusedBeforeAnyChange) {
    m_request.num_vfs = 9;
    Journal journal;
    auto prepared = prepare(m_request, m_sysfs, m_link, journal);
    ASSERT_FALSE(prepared);
    EXPECT_EQ(prepared.error().code, SriovErrc::TooManyVfs);
    m_request.num_vfs = 1;  // VF 1 needs two
    prepared = prepare(m_request, m_sysfs, m_link, journal);
    ASSERT_FALSE(prepared);
    EXPECT_EQ(prepared.error().code, SriovErrc::NoSuchVf);
    EXPECT_TRUE(m_fake.writes().empty());
    EXPECT_TRUE(journal.empty());
}

TEST_F(Setup_test, MissingVfioDriverIsRefusedBeforeAnyChange) {
    fs::remove_all(m_fake.root() / "bus/pci/drivers/vfio-pci");
    Journal journal;
    auto prepared = prepare(m_request, m_sysfs, m_link, journal);
    ASSERT_FALSE(prepared);
    EXPECT_EQ(prepared.error().code, SriovErrc::DriverMissing);
    EXPECT_TRUE(m_fake.writes().empty());
}

TEST_F(Setup_test, UnwritableJournalStopsTheChange) {
    Journal journal(m_fake.root() / "no-such-dir" / "journal.json");
    auto prepared = prepare(m_request, m_sysfs, m_link, journal);
    ASSERT_FALSE(prepared);
    EXPECT_EQ(prepared.error().code, SriovErrc::JournalIo);
    EXPECT_TRUE(m_fake.writes().empty()) << "write-ahead: no record, no change";
}

TEST_F(Setup_test, MalformedJournalFileIsJournalIo) {
    std::ofstream(m_journal_path) << "{\"entries\": [{\"pf\": \"x\"}]}";
    auto loaded = Journal::load(m_journal_path);
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().code, SriovErrc::JournalIo);
    EXPECT_NE(loaded.error().message().find("without 'op'"), std::string::npos);
    std::ofstream(m_journal_path) << "not json";
    EXPECT_FALSE(Journal::load(m_journal_path));
}

TEST_F(Setup_test, UnknownOrIncompleteEntryIsAFailureNotACrash) {
    std::ofstream(m_journal_path) << R"({"entries": [{"op": "num_vfs", "pf": "enp59s0f0", "previous": 0},
                                                     {"op": "frobnicate"}, {"op": "binding"}]})";
    auto loaded = Journal::load(m_journal_path);
    ASSERT_TRUE(loaded);
    const auto report = loaded->restore(m_sysfs, m_link);
    EXPECT_EQ(report.failures.size(), 2u);
    EXPECT_EQ(report.undone.size(), 1u);
}

}  // namespace
}  // namespace vnetct::sriov
