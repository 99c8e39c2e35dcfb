// Every rule of the table is exercised by some test of this binary: a test cites
// a rule by starting its name with the id (FO_MIG_SRC_01_... for FO-MIG-SRC-01;
// FO_MIG_SRC_01_02_... cites -01 and -02). Read back from GoogleTest's registry, so
// the citations cannot drift from the tests.
#include <algorithm>
#include <regex>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "vnetct/reference_impl/rules.hpp"

namespace vnetct::reference_impl {
namespace {

// Rules of the guest and the wire: the host model has no behaviour for them; the
// conformance cases (cases/failover/pairing.py, datapath.py) check them on QEMU.
// Judged on the guest and the wire, not by the model (FO-MIG-TGT-03: the announce frames).
const std::set<std::string> kNotForTheHostModel{"FO-PAIR-01", "FO-DATA-01", "FO-MIG-TGT-03"};

std::set<std::string> rules_cited_by_test_names() {
    static const std::regex citation{"FO(_[A-Z]+)+(_[0-9]{2})+"};
    static const std::regex number{"_([0-9]{2})"};
    std::set<std::string> cited;
    const ::testing::UnitTest& tests = *::testing::UnitTest::GetInstance();
    for (int suite = 0; suite < tests.total_test_suite_count(); ++suite) {
        const ::testing::TestSuite& test_suite = *tests.GetTestSuite(suite);
        for (int test = 0; test < test_suite.total_test_count(); ++test) {
            const std::string name = test_suite.GetTestInfo(test)->name();
            for (auto match = std::sregex_iterator(name.begin(), name.end(), citation);
                 match != std::sregex_iterator(); ++match) {
                const std::string text = match->str();
                const std::string area = text.substr(0, text.find_first_of("0123456789") - 1);
                std::string prefix = area;
                std::replace(prefix.begin(), prefix.end(), '_', '-');
                const std::string numbers = text.substr(area.size());
                for (auto id = std::sregex_iterator(numbers.begin(), numbers.end(), number);
                     id != std::sregex_iterator(); ++id) {
                    cited.insert(prefix + "-" + (*id)[1].str());
                }
            }
        }
    }
    return cited;
}

TEST(FailoverRuleCoverage_test, EveryRuleIsCitedByATest) {
    const std::set<std::string> cited = rules_cited_by_test_names();
    for (const Rule& rule : rules_of(RuleTable::Failover)) {
        const std::string id{rule.id};
        if (kNotForTheHostModel.contains(id)) {
            continue;
        }
        EXPECT_TRUE(cited.contains(id)) << "no test cites " << id << ": " << rule.sentence;
    }
}

TEST(FailoverRuleCoverage_test, EveryCitationNamesARule) {
    for (const std::string& id : rules_cited_by_test_names()) {
        EXPECT_TRUE(find_rule(id).has_value()) << "a test name cites unknown rule " << id;
    }
    for (const std::string& id : kNotForTheHostModel) {
        EXPECT_TRUE(find_rule(id).has_value()) << id;
    }
}

}  // namespace
}  // namespace vnetct::reference_impl
