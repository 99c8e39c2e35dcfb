// libvirt <teaming>: the rules on valid and invalid domains, the argv
// fragment, and bad input (malformed, truncated, not a domain, too large, a
// DOCTYPE with internal or external entities) that must give a clear error,
// never a crash, a hang or a read of anything outside the document.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vnetct/teaming/teaming.hpp"

using namespace vnetct::teaming;

namespace {

struct Nic {
    std::string type = "network";
    std::string model = "virtio";
    std::string alias = "ua-backup0";
    std::string mac = "52:54:00:6f:55:cc";
    std::string teaming = "<teaming type='persistent'/>";
    std::string address = "<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>";
    std::string source = "<source network='default'/>";
};

Nic standby() { return Nic{}; }

Nic primary() {
    Nic nic;
    nic.type = "hostdev";
    nic.model = "";
    nic.alias = "ua-hostdev0";
    nic.teaming = "<teaming type='transient' persistent='ua-backup0'/>";
    nic.address = "<address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>";
    nic.source = "<source><address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/></source>";
    return nic;
}

std::string interface(const Nic& nic) {
    std::string xml = "    <interface type='" + nic.type + "'" + (nic.type == "hostdev" ? " managed='yes'" : "") + ">\n";
    if (!nic.mac.empty()) xml += "      <mac address='" + nic.mac + "'/>\n";
    if (!nic.source.empty()) xml += "      " + nic.source + "\n";
    if (!nic.model.empty()) xml += "      <model type='" + nic.model + "'/>\n";
    if (!nic.teaming.empty()) xml += "      " + nic.teaming + "\n";
    if (!nic.alias.empty()) xml += "      <alias name='" + nic.alias + "'/>\n";
    if (!nic.address.empty()) xml += "      " + nic.address + "\n";
    return xml + "    </interface>\n";
}

std::string domain(const std::vector<Nic>& nics, const std::string& machine = "pc-q35-8.2") {
    std::string xml =
        "<domain type='kvm'>\n"
        "  <name>team</name>\n"
        "  <memory unit='MiB'>1024</memory>\n"
        "  <os><type arch='x86_64' machine='" + machine + "'>hvm</type></os>\n"
        "  <devices>\n"
        "    <controller type='pci' index='0' model='pcie-root'/>\n"
        "    <controller type='pci' index='1' model='pcie-root-port'/>\n"
        "    <controller type='pci' index='2' model='pcie-root-port'/>\n"
        "    <controller type='pci' index='3' model='pcie-to-pci-bridge'/>\n";
    for (const Nic& nic : nics) {
        xml += interface(nic);
    }
    return xml + "  </devices>\n</domain>\n";
}

Verdict verdict_of(const std::string& xml) {
    auto parsed = parse_domain(xml, "test.xml");
    EXPECT_TRUE(parsed.has_value()) << (parsed ? "" : parsed.error().message());
    return parsed ? check(*parsed) : Verdict{};
}

std::vector<std::string> rules_of(const Verdict& verdict) {
    std::vector<std::string> rules;
    for (const auto& violation : verdict.violations) {
        rules.push_back(violation.rule);
    }
    return rules;
}

using Rules = std::vector<std::string>;

}  // namespace

// A file under a name nobody could know or take beforehand (mkstemp), holding `content`.
static std::string temporary_file(const std::string& content) {
    std::string pattern = (std::filesystem::temp_directory_path() / "vnetct-teaming-XXXXXX").string();
    const int fd = mkstemp(pattern.data());
    if (fd < 0) {
        ADD_FAILURE() << "mkstemp: " << std::strerror(errno);
        return pattern;
    }
    close(fd);
    std::ofstream(pattern) << content;
    return pattern;
}

TEST(Teaming_test, ValidTeamIsConformantAndGivesLibvirtsDeviceOptions) {
    const Verdict verdict = verdict_of(domain({standby(), primary()}));
    EXPECT_TRUE(verdict.conformant()) << verdict.violations.front().message;
    ASSERT_EQ(verdict.argv.size(), 4u);
    EXPECT_EQ(verdict.argv[1],
              "virtio-net-pci,netdev=hostua-backup0,id=ua-backup0,mac=52:54:00:6f:55:cc,bus=pci.1,addr=0x0,failover=on");
    EXPECT_EQ(verdict.argv[3],
              "vfio-pci,host=0000:3b:02.1,id=ua-hostdev0,bus=pci.2,addr=0x0,failover_pair_id=ua-backup0");
}

TEST(Teaming_test, TEAM_01_UnknownTeamingType) {
    Nic nic = standby();
    nic.teaming = "<teaming type='backup'/>";
    const Verdict verdict = verdict_of(domain({nic}));
    ASSERT_EQ(rules_of(verdict), Rules{"TEAM-01"});
    EXPECT_EQ(verdict.violations[0].element, "teaming");
    EXPECT_EQ(verdict.violations[0].attribute, "type");
    EXPECT_EQ(verdict.violations[0].line, 14);  // the <teaming> line
}

TEST(Teaming_test, TEAM_02_PersistentMustBeVirtio) {
    Nic nic = standby();
    nic.model = "e1000e";
    EXPECT_EQ(rules_of(verdict_of(domain({nic, primary()}))), Rules{"TEAM-02"});
    nic.model = "";
    EXPECT_EQ(rules_of(verdict_of(domain({nic, primary()}))), Rules{"TEAM-02"});
    nic.model = "virtio-non-transitional";
    EXPECT_TRUE(verdict_of(domain({nic, primary()})).conformant());
}

TEST(Teaming_test, TEAM_03_TransientMustBeHostdev) {
    Nic nic = primary();
    nic.type = "network";
    nic.source = "<source network='default'/>";
    EXPECT_EQ(rules_of(verdict_of(domain({standby(), nic}))), Rules{"TEAM-03"});
}

TEST(Teaming_test, TEAM_04_PersistentAttributeRequiredForTransientOnlyThere) {
    Nic transient = primary();
    transient.teaming = "<teaming type='transient'/>";
    const Verdict missing = verdict_of(domain({standby(), transient}));
    ASSERT_EQ(rules_of(missing), Rules{"TEAM-04"});
    EXPECT_EQ(missing.violations[0].attribute, "persistent");
    EXPECT_EQ(missing.argv[3].find("failover_pair_id"), std::string::npos);

    Nic persistent = standby();
    persistent.teaming = "<teaming type='persistent' persistent='ua-backup0'/>";
    EXPECT_EQ(rules_of(verdict_of(domain({persistent, primary()}))), Rules{"TEAM-04"});
}

TEST(Teaming_test, TEAM_05_PersistentMustNameAPersistentInterfacesUserAlias) {
    Nic transient = primary();
    transient.teaming = "<teaming type='transient' persistent='ua-nosuch'/>";
    const Verdict nosuch = verdict_of(domain({standby(), transient}));
    ASSERT_EQ(rules_of(nosuch), Rules{"TEAM-05"});
    EXPECT_NE(nosuch.violations[0].message.find("'ua-nosuch'"), std::string::npos);

    // The alias exists but on an interface that is not persistent.
    Nic plain = standby();
    plain.teaming = "";
    EXPECT_EQ(rules_of(verdict_of(domain({plain, primary()}))), Rules{"TEAM-05"});

    // Not a user alias: libvirt drops it.
    Nic persistent = standby();
    persistent.alias = "net0";
    transient.teaming = "<teaming type='transient' persistent='net0'/>";
    const Verdict dropped = verdict_of(domain({persistent, transient}));
    ASSERT_EQ(rules_of(dropped), Rules{"TEAM-05"});
    EXPECT_EQ(dropped.violations[0].element, "alias");
    EXPECT_NE(dropped.violations[0].message.find("'ua-'"), std::string::npos);
}

TEST(Teaming_test, TEAM_06_OneTransientPerPersistent) {
    Nic second = primary();
    second.alias = "ua-hostdev1";
    second.address = "<address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>";
    std::string xml = domain({standby(), primary(), second});
    xml.insert(xml.find("  </devices>"), "");  // bus 4 undeclared: add a root port for it
    xml.insert(xml.find("    <interface"), "    <controller type='pci' index='4' model='pcie-root-port'/>\n");
    const Verdict verdict = verdict_of(xml);
    ASSERT_EQ(rules_of(verdict), Rules{"TEAM-06"});
    EXPECT_EQ(verdict.argv.size(), 6u);
}

TEST(Teaming_test, TEAM_07_SameMacBothExplicit) {
    Nic transient = primary();
    transient.mac = "52:54:00:00:00:01";
    const Verdict differing = verdict_of(domain({standby(), transient}));
    ASSERT_EQ(rules_of(differing), Rules{"TEAM-07"});
    EXPECT_NE(differing.violations[0].message.find("differs"), std::string::npos);
    transient.mac = "";
    EXPECT_EQ(rules_of(verdict_of(domain({standby(), transient}))), Rules{"TEAM-07"});
    transient.mac = "52:54:00:6F:55:CC";  // case does not matter
    EXPECT_TRUE(verdict_of(domain({standby(), transient})).conformant());
}

TEST(Teaming_test, FO_CFG_02_PrimaryOnTheRootBus) {
    Nic transient = primary();
    transient.address = "<address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>";
    const Verdict verdict = verdict_of(domain({standby(), transient}));
    ASSERT_EQ(rules_of(verdict), Rules{"FO-CFG-02"});
    EXPECT_EQ(verdict.violations[0].attribute, "bus");
    EXPECT_NE(verdict.argv[3].find("bus=pcie.0,addr=0x5"), std::string::npos) << verdict.argv[3];
    transient.address = "<address type='pci' domain='0x0000' bus='0x09' slot='0x00' function='0x0'/>";
    EXPECT_EQ(rules_of(verdict_of(domain({standby(), transient}))), Rules{"FO-CFG-02"});  // undeclared bus
}

TEST(Teaming_test, FO_CFG_03_PrimaryAloneInItsSlot) {
    Nic transient = primary();
    transient.address = "<address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x1'/>";
    EXPECT_EQ(rules_of(verdict_of(domain({standby(), transient}))), Rules{"FO-CFG-03"});
    transient.address =
        "<address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0' multifunction='on'/>";
    const Verdict verdict = verdict_of(domain({standby(), transient}));
    ASSERT_EQ(rules_of(verdict), Rules{"FO-CFG-03"});
    EXPECT_NE(verdict.argv[3].find("multifunction=on"), std::string::npos);
}

TEST(Teaming_test, FO_CFG_06_PrimaryOnConventionalPciOrAMachineWithoutPcie) {
    Nic transient = primary();
    transient.address = "<address type='pci' domain='0x0000' bus='0x03' slot='0x01' function='0x0'/>";
    EXPECT_EQ(rules_of(verdict_of(domain({standby(), transient}))), Rules{"FO-CFG-06"});
    Nic nowhere = primary();
    nowhere.address = "";
    Nic standby_nowhere = standby();
    standby_nowhere.address = "";
    EXPECT_EQ(rules_of(verdict_of(domain({standby_nowhere, nowhere}, "pc-i440fx-8.2"))), Rules{"FO-CFG-06"});
    EXPECT_TRUE(verdict_of(domain({standby_nowhere, nowhere})).conformant());  // libvirt places them
}

TEST(Teaming_test, FO_CFG_07_PrimaryInItsStandbysSlot) {
    Nic transient = primary();
    transient.address = "<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>";
    EXPECT_EQ(rules_of(verdict_of(domain({standby(), transient}))), Rules{"FO-CFG-07"});
}

TEST(Teaming_test, DomainWithoutTeamingHasNothingToSay) {
    Nic plain = standby();
    plain.teaming = "";
    const Verdict verdict = verdict_of(domain({plain}));
    EXPECT_TRUE(verdict.conformant());
    EXPECT_TRUE(verdict.argv.empty());
}

TEST(Teaming_test, BadNumberNamesFileLineElementAndAttribute) {
    Nic transient = primary();
    transient.address = "<address type='pci' domain='0x0000' bus='0x02' slot='0x40' function='0x0'/>";
    auto parsed = parse_domain(domain({standby(), transient}), "bad.xml");
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, TeamingErrc::BadValue);
    EXPECT_NE(parsed.error().detail.find("bad.xml:"), std::string::npos);
    EXPECT_NE(parsed.error().detail.find("<address> attribute slot: '0x40', expected a number 0..31"),
              std::string::npos)
        << parsed.error().detail;
}

TEST(Teaming_test, MalformedXmlGivesTheLine) {
    auto parsed = parse_domain("<domain>\n  <devices>\n    <interface type='network'>\n  </devices>\n</domain>\n", "m.xml");
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, TeamingErrc::Malformed);
    EXPECT_EQ(parsed.error().detail.rfind("m.xml:4: ", 0), 0u) << parsed.error().detail;
}

TEST(Teaming_test, EveryTruncationIsAnErrorNeverACrash) {
    const std::string xml = domain({standby(), primary()});
    for (std::size_t length = 0; length + 1 < xml.size(); ++length) {
        auto parsed = parse_domain(std::string_view(xml).substr(0, length), "cut.xml");
        // Cut inside the trailing newline only is still a whole document.
        if (length < xml.size() - 1) {
            ASSERT_FALSE(parsed.has_value()) << "length " << length;
            EXPECT_FALSE(parsed.error().detail.empty());
        }
    }
}

TEST(Teaming_test, NotADomain) {
    auto parsed = parse_domain("<network><name>default</name></network>", "net.xml");
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, TeamingErrc::NotADomain);
    EXPECT_NE(parsed.error().detail.find("<network>, expected <domain>"), std::string::npos);
}

TEST(Teaming_test, TooLargeIsRefusedUnparsed) {
    std::string huge = domain({standby(), primary()});
    huge.insert(huge.find("<devices>"), std::string(max_domain_bytes, ' '));
    auto parsed = parse_domain(huge, "huge.xml");
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, TeamingErrc::TooLarge);

    const std::string path = temporary_file(huge);
    auto from_file = parse_domain_file(path);
    std::remove(path.c_str());
    ASSERT_FALSE(from_file.has_value());
    EXPECT_EQ(from_file.error().code, TeamingErrc::TooLarge);
}

TEST(Teaming_test, MissingFileIsUnreadable) {
    auto parsed = parse_domain_file("/nonexistent/domain.xml");
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, TeamingErrc::Unreadable);
    EXPECT_NE(parsed.error().detail.find("/nonexistent/domain.xml"), std::string::npos);
}

TEST(Teaming_test, BillionLaughsIsRefusedAtTheDoctypeQuickly) {
    std::string xml = "<?xml version='1.0'?>\n<!DOCTYPE domain [\n  <!ENTITY a0 'ha'>\n";
    for (int level = 1; level <= 10; ++level) {
        std::string refs;
        for (int i = 0; i < 10; ++i) refs += "&a" + std::to_string(level - 1) + ";";
        xml += "  <!ENTITY a" + std::to_string(level) + " '" + refs + "'>\n";
    }
    xml += "]>\n<domain><name>&a10;</name></domain>\n";
    const auto start = std::chrono::steady_clock::now();
    auto parsed = parse_domain(xml, "laughs.xml");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, TeamingErrc::Forbidden);
    EXPECT_EQ(parsed.error().detail.rfind("laughs.xml:2: ", 0), 0u) << parsed.error().detail;
}

TEST(Teaming_test, ExternalEntitiesAreNeverLoaded) {
    const std::string secret_path = temporary_file("TOPSECRET");
    const std::size_t loads_before = external_loads_attempted();
    for (const std::string& uri : {"file://" + secret_path, secret_path, std::string("http://127.0.0.1:9/x.dtd")}) {
        for (const std::string& xml :
             {"<!DOCTYPE domain [ <!ENTITY x SYSTEM '" + uri + "'> ]>\n<domain><name>&x;</name></domain>",
              "<!DOCTYPE domain SYSTEM '" + uri + "'>\n<domain><name>n</name></domain>",
              "<!DOCTYPE domain [ <!ENTITY % p SYSTEM '" + uri + "'> %p; ]>\n<domain/>"}) {
            auto parsed = parse_domain(xml, "xxe.xml");
            ASSERT_FALSE(parsed.has_value()) << xml;
            EXPECT_EQ(parsed.error().code, TeamingErrc::Forbidden) << parsed.error().message();
            EXPECT_EQ(parsed.error().detail.find("TOPSECRET"), std::string::npos);
        }
    }
    // An entity reference without any declaration: not well-formed, nothing loaded.
    auto undeclared = parse_domain("<domain><name>&x;</name></domain>", "undeclared.xml");
    ASSERT_FALSE(undeclared.has_value());
    EXPECT_EQ(undeclared.error().code, TeamingErrc::Malformed);
    EXPECT_EQ(external_loads_attempted(), loads_before) << "libxml2 tried to load an external resource";
    std::remove(secret_path.c_str());
}

TEST(Teaming_test, DoctypeInsideACommentIsJustAComment) {
    const std::string xml = domain({standby(), primary()});
    const std::string commented = "<!-- <!DOCTYPE domain [ <!ENTITY x 'y'> ]> -->\n" + xml;
    EXPECT_TRUE(verdict_of(commented).conformant());
}
