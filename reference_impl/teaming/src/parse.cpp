// The domain XML, read with libxml2 and nothing from outside: XML_PARSE_NONET,
// no DTD loading, no entity substitution, an external-entity loader that
// refuses (and counts) every attempt, and a SAX hook that stops the parser at
// a DOCTYPE before any entity declaration is read.
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "vnetct/teaming/teaming.hpp"

namespace vnetct::teaming {
namespace {

std::atomic<std::size_t> g_external_loads{0};
std::mutex g_parse_mutex;  // libxml2's error and entity-loader hooks are process-wide

struct ParseState {
    int doctype_line = 0;
    std::string first_error;
    int first_error_line = 0;
};

xmlParserInputPtr refuse_external_entity(const char*, const char*, xmlParserCtxtPtr) {
    ++g_external_loads;
    return nullptr;
}

void collect_error(void* user, xmlErrorPtr error) {
    auto* state = static_cast<ParseState*>(user);
    if (state == nullptr || error == nullptr || !state->first_error.empty()) {
        return;
    }
    std::string message = error->message ? error->message : "unknown libxml2 error";
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
    }
    state->first_error = message;
    state->first_error_line = error->line;
}

void stop_at_doctype(void* context, const xmlChar*, const xmlChar*, const xmlChar*) {
    auto* parser = static_cast<xmlParserCtxtPtr>(context);
    auto* state = static_cast<ParseState*>(parser->_private);
    if (state->doctype_line == 0) {
        state->doctype_line = parser->input ? parser->input->line : 1;
    }
    xmlStopParser(parser);
}

std::string text(const xmlChar* value) { return value ? reinterpret_cast<const char*>(value) : ""; }

std::string attribute(xmlNodePtr node, const char* name) {
    xmlChar* value = xmlGetProp(node, reinterpret_cast<const xmlChar*>(name));
    std::string result = text(value);
    xmlFree(value);
    return result;
}

bool has_attribute(xmlNodePtr node, const char* name) {
    return xmlHasProp(node, reinterpret_cast<const xmlChar*>(name)) != nullptr;
}

bool named(xmlNodePtr node, const char* name) {
    return node->type == XML_ELEMENT_NODE && std::strcmp(reinterpret_cast<const char*>(node->name), name) == 0;
}

xmlNodePtr child(xmlNodePtr parent, const char* name) {
    for (xmlNodePtr node = parent->children; node != nullptr; node = node->next) {
        if (named(node, name)) {
            return node;
        }
    }
    return nullptr;
}

int line_of(xmlNodePtr node) { return static_cast<int>(xmlGetLineNo(node)); }

std::string where(const std::string& file, xmlNodePtr node, const char* attr) {
    std::string place = file + ":" + std::to_string(line_of(node)) + ": <" + text(node->name) + ">";
    if (attr != nullptr) {
        place += " attribute " + std::string(attr);
    }
    return place;
}

// libvirt's numbers: decimal or 0x-prefixed hex.
TeamingResult<unsigned> number(const std::string& file, xmlNodePtr node, const char* name, unsigned limit) {
    const std::string value = attribute(node, name);
    try {
        std::size_t used = 0;
        const unsigned long parsed = std::stoul(value, &used, 0);
        if (used == value.size() && parsed <= limit) {
            return static_cast<unsigned>(parsed);
        }
    } catch (const std::exception&) {
    }
    return fail(TeamingErrc::BadValue, where(file, node, name) + ": '" + value + "', expected a number 0.." +
                                           std::to_string(limit) + " (decimal or 0x hex)");
}

TeamingResult<std::optional<PciAddress>> pci_address(const std::string& file, xmlNodePtr parent) {
    xmlNodePtr node = child(parent, "address");
    if (node == nullptr || attribute(node, "type") != "pci") {
        return std::optional<PciAddress>{};
    }
    PciAddress address;
    address.line = line_of(node);
    struct Field {
        const char* name;
        unsigned* target;
        unsigned limit;
    };
    for (const Field& field : {Field{"domain", &address.domain, 0xffff}, Field{"bus", &address.bus, 0xff},
                               Field{"slot", &address.slot, 0x1f}, Field{"function", &address.function, 7}}) {
        if (!has_attribute(node, field.name)) {
            continue;
        }
        auto value = number(file, node, field.name, field.limit);
        if (!value) {
            return tl::unexpected(value.error());
        }
        *field.target = *value;
    }
    address.multifunction = attribute(node, "multifunction") == "on";
    return std::optional<PciAddress>{address};
}

TeamingResult<Interface> parse_interface(const std::string& file, xmlNodePtr node) {
    Interface found;
    found.line = line_of(node);
    found.type = attribute(node, "type");
    if (xmlNodePtr model = child(node, "model")) {
        found.model = attribute(model, "type");
    }
    if (xmlNodePtr alias = child(node, "alias")) {
        found.alias = attribute(alias, "name");
        found.alias_line = line_of(alias);
    }
    if (xmlNodePtr mac = child(node, "mac")) {
        found.mac = attribute(mac, "address");
        found.mac_line = line_of(mac);
        for (char& c : found.mac) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
    }
    if (xmlNodePtr teaming = child(node, "teaming")) {
        found.teaming_line = line_of(teaming);
        found.teaming_type = attribute(teaming, "type");
        if (has_attribute(teaming, "persistent")) {
            found.teaming_persistent = attribute(teaming, "persistent");
        }
    }
    auto address = pci_address(file, node);
    if (!address) {
        return tl::unexpected(address.error());
    }
    found.address = *address;
    if (xmlNodePtr source = child(node, "source")) {
        auto source_address = pci_address(file, source);
        if (!source_address) {
            return tl::unexpected(source_address.error());
        }
        found.source_address = *source_address;
    }
    return found;
}

TeamingResult<Domain> walk(const std::string& file, xmlDocPtr document) {
    xmlNodePtr root = xmlDocGetRootElement(document);
    if (root == nullptr || !named(root, "domain")) {
        return fail(TeamingErrc::NotADomain, file + ":" + std::to_string(root ? line_of(root) : 1) +
                                                 ": the root element is <" + (root ? text(root->name) : "") +
                                                 ">, expected <domain>");
    }
    Domain domain;
    domain.file = file;
    if (xmlNodePtr os = child(root, "os")) {
        if (xmlNodePtr type = child(os, "type")) {
            domain.machine = attribute(type, "machine");
        }
    }
    xmlNodePtr devices = child(root, "devices");
    if (devices == nullptr) {
        return domain;
    }
    for (xmlNodePtr node = devices->children; node != nullptr; node = node->next) {
        if (named(node, "interface")) {
            auto parsed = parse_interface(file, node);
            if (!parsed) {
                return tl::unexpected(parsed.error());
            }
            domain.interfaces.push_back(std::move(*parsed));
        } else if (named(node, "controller") && attribute(node, "type") == "pci") {
            auto index = number(file, node, "index", 0xff);
            if (!index) {
                return tl::unexpected(index.error());
            }
            domain.controllers.push_back(Controller{attribute(node, "model"), *index, line_of(node)});
        }
    }
    return domain;
}

}  // namespace

std::size_t external_loads_attempted() { return g_external_loads.load(); }

TeamingResult<Domain> parse_domain(std::string_view xml, std::string_view file_name) {
    const std::string file(file_name);
    if (xml.size() > max_domain_bytes) {
        return fail(TeamingErrc::TooLarge, file + ": " + std::to_string(xml.size()) + " bytes; the limit is " +
                                               std::to_string(max_domain_bytes) + " bytes");
    }
    std::lock_guard lock(g_parse_mutex);
    ParseState state;
    const xmlExternalEntityLoader previous_loader = xmlGetExternalEntityLoader();
    xmlSetExternalEntityLoader(refuse_external_entity);
    xmlSetStructuredErrorFunc(&state, collect_error);
    xmlParserCtxtPtr parser = xmlNewParserCtxt();
    if (parser == nullptr) {
        xmlSetStructuredErrorFunc(nullptr, nullptr);
        xmlSetExternalEntityLoader(previous_loader);
        return fail(TeamingErrc::Malformed, file + ": libxml2 could not allocate a parser");
    }
    parser->_private = &state;
    parser->sax->internalSubset = stop_at_doctype;
    parser->sax->externalSubset = stop_at_doctype;
    // No XML_PARSE_NOENT (entities stay references), no DTDLOAD/DTDATTR, no XINCLUDE, no HUGE.
    xmlDocPtr document = xmlCtxtReadMemory(parser, xml.data(), static_cast<int>(xml.size()), file.c_str(), nullptr,
                                           XML_PARSE_NONET | XML_PARSE_BIG_LINES | XML_PARSE_NOWARNING);
    xmlFreeParserCtxt(parser);
    xmlSetStructuredErrorFunc(nullptr, nullptr);
    xmlSetExternalEntityLoader(previous_loader);
    if (state.doctype_line != 0) {
        if (document != nullptr) {
            xmlFreeDoc(document);
        }
        return fail(TeamingErrc::Forbidden, file + ":" + std::to_string(state.doctype_line) +
                                                ": <!DOCTYPE>: a libvirt domain needs none; refused before any "
                                                "entity or DTD is read");
    }
    if (document == nullptr || !state.first_error.empty()) {
        if (document != nullptr) {
            xmlFreeDoc(document);
        }
        return fail(TeamingErrc::Malformed,
                    file + ":" + std::to_string(state.first_error_line) + ": " +
                        (state.first_error.empty() ? "libxml2 returned no document" : state.first_error));
    }
    auto domain = walk(file, document);
    xmlFreeDoc(document);
    return domain;
}

TeamingResult<Domain> parse_domain_file(const std::string& path) {
    std::error_code error;
    const auto size = std::filesystem::file_size(path, error);
    if (error) {
        return fail(TeamingErrc::Unreadable, path + ": " + error.message());
    }
    if (size > max_domain_bytes) {
        return fail(TeamingErrc::TooLarge, path + ": " + std::to_string(size) + " bytes; the limit is " +
                                               std::to_string(max_domain_bytes) + " bytes");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return fail(TeamingErrc::Unreadable, path + ": " + std::strerror(errno));
    }
    std::ostringstream content;
    content << in.rdbuf();
    return parse_domain(content.str(), path);
}

}  // namespace vnetct::teaming
